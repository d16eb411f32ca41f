// Samples every sidecar's GET /stats once a second (admin port 9090, with the namespace's
// bearer token: the sidecars will require it for /stats) and keeps, per workload, the sum of
// open connections against the policy's cluster cap. A sidecar that refuses the connection
// is dead and holds nothing; one that times out is frozen and still holds its sockets, so its
// last answer stands in for it.
import type { PodDirectory } from "./pod-directory.js";
import { errText, sleepUnless } from "./soak-log.js";
import type { Workload } from "./workloads.js";

export const ADMIN_PORT = 9090;
const STATS_TIMEOUT_MS = 800;

/** What a sidecar's /stats says (DESIGN.md "Contracts"). */
export interface SidecarStats {
  connections: number;
  channels: number;
}

export type StatsResult = { ok: true; stats: SidecarStats } | { ok: false; reason: string };

/** GET /stats of one sidecar. */
export async function readStats(ip: string, token: string | undefined): Promise<StatsResult> {
  try {
    const res = await fetch(`http://${ip}:${ADMIN_PORT}/stats`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(STATS_TIMEOUT_MS),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return { ok: false, reason: `http_${res.status}` };
    }
    const body = (await res.json()) as Partial<SidecarStats>;
    if (!Number.isInteger(body.connections) || !Number.isInteger(body.channels)) return { ok: false, reason: "bad_json" };
    return { ok: true, stats: { connections: body.connections!, channels: body.channels! } };
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string } };
    if (e.name === "TimeoutError") return { ok: false, reason: "timeout" };
    return { ok: false, reason: e.cause?.code ?? errText(err) };
  }
}

/** The cap invariant of one workload over the whole soak. */
export interface CapRecord {
  workload: string;
  cap: number;
  samples: number;
  samplesOver: number;
  maxConnections: number;
  maxRatio: number;
  /** When the maximum was seen (seconds since the soak started) and how it was spread over pods. */
  maxAtS: number;
  maxByPod: Record<string, number>;
  /** Samples where some sidecar did not answer (its last count, or 0 if dead, stood in). */
  partialSamples: number;
  /** Failed /stats calls by reason (timeout, ECONNREFUSED, http_401, ...). */
  failures: Record<string, number>;
  /** [seconds since start, sum of connections] once a second. */
  series: [number, number][];
}

export class SidecarSampler {
  readonly records: CapRecord[];
  private readonly lastCount = new Map<string, number>();
  private readonly elapsedS: () => number;

  constructor(private readonly workloads: readonly Workload[], private readonly pods: PodDirectory, elapsedS: () => number) {
    this.elapsedS = elapsedS;
    this.records = workloads.map((w) => ({
      workload: `${w.namespace}/${w.name}`, cap: w.maxConnections, samples: 0, samplesOver: 0, maxConnections: 0, maxRatio: 0,
      maxAtS: 0, maxByPod: {}, partialSamples: 0, failures: {}, series: [],
    }));
  }

  /** One sample of every workload. */
  async sampleOnce(): Promise<void> {
    const at = this.elapsedS();
    await Promise.all(this.workloads.map(async (w, i) => {
      const rec = this.records[i]!;
      const byPod: Record<string, number> = {};
      let partial = false;
      await Promise.all(this.pods.all(w).map(async (p) => {
        const key = `${w.namespace}/${p.name}`;
        if (!p.ip) return (byPod[p.name] = 0);
        const r = await readStats(p.ip, w.token);
        if (r.ok) {
          this.lastCount.set(key, r.stats.connections);
          byPod[p.name] = r.stats.connections;
          return;
        }
        partial = true;
        rec.failures[r.reason] = (rec.failures[r.reason] ?? 0) + 1;
        // Refused or reset: the process is gone and so are its sockets; otherwise it is frozen and holds them.
        byPod[p.name] = /ECONNREFUSED|ECONNRESET|EHOSTUNREACH/.test(r.reason) ? 0 : (this.lastCount.get(key) ?? 0);
      }));
      const sum = Object.values(byPod).reduce((a, b) => a + b, 0);
      rec.samples++;
      if (partial) rec.partialSamples++;
      if (sum > rec.cap) rec.samplesOver++;
      rec.series.push([at, sum]);
      if (sum > rec.maxConnections) {
        rec.maxConnections = sum;
        rec.maxRatio = sum / rec.cap;
        rec.maxAtS = at;
        rec.maxByPod = byPod;
      }
    }));
  }

  /** Samples once a second (start to start; a slow round delays the next) until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const t0 = Date.now();
      await this.sampleOnce();
      await sleepUnless(Math.max(0, 1000 - (Date.now() - t0)), signal);
    }
  }
}

/** Where a sidecar's limits come from now ("pushed" by the operator, or its "flags"), or the error. */
export async function readConfigSource(ip: string, token: string | undefined): Promise<string> {
  try {
    const res = await fetch(`http://${ip}:${ADMIN_PORT}/config`, {
      headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(STATS_TIMEOUT_MS),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return `http_${res.status}`;
    }
    return String(((await res.json()) as { source?: unknown }).source);
  } catch (err) {
    return errText(err);
  }
}
