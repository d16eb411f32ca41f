// Per policy: what each metered pod's sidecar last answered, and what was last pushed to it.
import type { PodObservation, SidecarSample } from "../aggregate/aggregate.js";
import type { SidecarConfig } from "../scrape/sidecar-client.js";
import { canonicalJson } from "./canonical-json.js";

/** A stale pod's last known counts are used for at most this many scrape intervals. */
export const STALE_INTERVALS = 3;

/** A pod of the target that can be scraped (Running, with an IP). */
export interface ScrapeTarget {
  name: string;
  ip: string;
  node: string | undefined;
  ready: boolean;
  /** The pod is being deleted (its sidecar drains). */
  terminating: boolean;
}

interface PodMemory {
  ip: string;
  sample: SidecarSample | undefined;
  lastGoodMs: number;
  /** Whether the latest scrape got an answer. */
  fresh: boolean;
  lastError: string | undefined;
  /** The config last pushed and accepted, if any, and when (its TTL runs from then). */
  pushed: SidecarConfig | undefined;
  pushedAtMs: number;
  /** `pushed` as canonical JSON, to tell an unchanged config without a push. */
  pushedJson: string | undefined;
  /** The revision the sidecar answered to that PUT (undefined from older sidecars). */
  pushedRevision: string | undefined;
  /** Why the last PUT /config to this pod failed; undefined once one succeeds. */
  pushError: PushError | undefined;
}

/** A refused or failed PUT /config: the client's stable code (http_401, timeout, …) and its message. */
export interface PushError {
  code: string;
  message: string;
}

export class PodSamples {
  private readonly pods = new Map<string, PodMemory>();

  /**
   * Scrapes every target at once (the client bounds concurrency) and remembers the answers.
   * A pod whose IP changed is a new sidecar: nothing it said before is kept.
   */
  async scrape(targets: readonly ScrapeTarget[], fetchStats: (t: ScrapeTarget) => Promise<SidecarSample>, nowMs: number): Promise<void> {
    const alive = new Set(targets.map((t) => t.name));
    for (const name of this.pods.keys()) if (!alive.has(name)) this.pods.delete(name);
    await Promise.all(targets.map(async (t) => {
      let m = this.pods.get(t.name);
      if (!m || m.ip !== t.ip) {
        m = { ip: t.ip, sample: undefined, lastGoodMs: -Infinity, fresh: false, lastError: undefined, pushed: undefined, pushedAtMs: -Infinity, pushedJson: undefined, pushedRevision: undefined, pushError: undefined };
        this.pods.set(t.name, m);
      }
      try {
        m.sample = await fetchStats(t);
        m.lastGoodMs = nowMs;
        m.fresh = true;
        m.lastError = undefined;
      } catch (err) {
        m.fresh = false;
        m.lastError = (err as Error).message;
      }
    }));
  }

  /** The pods as the aggregate sees them: fresh counts, last known ones while not too old, or none. */
  observations(targets: readonly ScrapeTarget[], nowMs: number, intervalMs: number): PodObservation[] {
    return targets.map((t) => {
      const m = this.pods.get(t.name);
      const fresh = m?.fresh === true;
      const usable = m !== undefined && nowMs - m.lastGoodMs <= STALE_INTERVALS * intervalMs;
      return { name: t.name, node: t.node, ready: t.ready, sample: usable ? m.sample : undefined, stale: !fresh };
    });
  }

  /** Why each stale pod failed, as `name (error)`. */
  failures(names: readonly string[]): string[] {
    return names.map((n) => `${n} (${this.pods.get(n)?.lastError ?? "not scraped yet"})`);
  }

  isFresh(name: string): boolean {
    return this.pods.get(name)?.fresh === true;
  }

  /** Scraped at least once and never answered (injection, issue 16: how a pod without the sidecar looks). */
  neverAnswered(name: string): boolean {
    const m = this.pods.get(name);
    return m !== undefined && m.sample === undefined && m.lastError !== undefined;
  }

  pushed(name: string): SidecarConfig | undefined {
    return this.pods.get(name)?.pushed;
  }

  /** The pushed config the sidecar still enforces at `nowMs` (its TTL not run out), or undefined: it is back on its flags. */
  inForce(name: string, nowMs: number): SidecarConfig | undefined {
    const m = this.pods.get(name);
    if (!m?.pushed || nowMs - m.pushedAtMs >= m.pushed.ttlSeconds * 1000) return undefined;
    return m.pushed;
  }

  /** Records an accepted PUT /config (clearing any earlier push error) and the revision the sidecar answered. */
  setPushed(name: string, config: SidecarConfig, nowMs: number, revision?: string): void {
    const m = this.pods.get(name);
    if (!m) return;
    m.pushed = config;
    m.pushedAtMs = nowMs;
    m.pushedJson = canonicalJson(config);
    m.pushedRevision = revision;
    m.pushError = undefined;
  }

  /**
   * Whether pushing `config` now would change nothing: it equals the last accepted push, that
   * push is younger than `refreshAfterMs`, and this interval's `/stats` reports the revision
   * the push produced (so the sidecar has not restarted, expired it, or been told otherwise
   * since). A sidecar that reports no revision is always pushed.
   */
  holds(name: string, config: SidecarConfig, nowMs: number, refreshAfterMs: number): boolean {
    const m = this.pods.get(name);
    if (!m?.fresh || m.pushedRevision === undefined || m.pushError !== undefined) return false;
    const held = m.sample?.config;
    return held?.source === "pushed" && held.revision === m.pushedRevision
      && nowMs - m.pushedAtMs < refreshAfterMs && m.pushedJson === canonicalJson(config);
  }

  /** Records a failed PUT /config: the pod keeps what it last accepted, until its TTL. */
  setPushError(name: string, error: PushError): void {
    const m = this.pods.get(name);
    if (m) m.pushError = error;
  }

  pushError(name: string): PushError | undefined {
    return this.pods.get(name)?.pushError;
  }

  /** Every pod that was last told something, with its IP: what a deleted policy must lift. */
  pushedPods(): { name: string; ip: string }[] {
    return [...this.pods].filter(([, m]) => m.pushed !== undefined).map(([name, m]) => ({ name, ip: m.ip }));
  }
}
