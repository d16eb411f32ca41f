// An events.k8s.io/v1 recorder (client-node has none), deduplicating like client-go's
// tools/events: the same (type, reason, action, regarding) seen again within 6 minutes becomes
// a series on the first Event ({count, lastObservedTime}) instead of a new object, so a
// condition that flaps every scrape interval costs one Event, not one per interval.
//
// Recording never blocks the reconcile loop and never throws: writes run in the background,
// one at a time per series (repeats that arrive meanwhile fold into the next patch), with a few
// retries; failures are logged and dropped. Events are best-effort by design (kube-apiserver
// keeps them one hour); conditions in status carry the durable state.
import type { KubeConfig } from "@kubernetes/client-node";
import { realDelay, type Clock, type Delay } from "./backoff.js";
import { MERGE_PATCH, apiStatusCode, kubeRequest, microTime, seg } from "./request.js";

/** The object an Event is about (events.k8s.io/v1 `regarding`). */
export interface EventRegarding {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}

export type EventType = "Normal" | "Warning";

export interface EventRecorderOptions {
  kc: KubeConfig;
  /** Qualified controller name, e.g. "connmeter.io/operator". */
  reportingController: string;
  /** This replica, e.g. the pod name (≤ 128 characters). */
  reportingInstance: string;
  clock?: Clock;
  delay?: Delay;
  log?: (line: string) => void;
  /** Replaces the API server (unit tests). */
  api?: EventApi;
  /** Series kept in memory (client-go: 1000); the least recently seen is forgotten first. */
  maxSeries?: number;
}

/** Create and patch of an Event; errors carry statusCode. */
export interface EventApi {
  create(namespace: string, event: object): Promise<{ metadata?: { name?: string } }>;
  patch(namespace: string, name: string, patch: object): Promise<unknown>;
}

/** A repeat later than this after the last one starts a new Event (client-go: 6 min). */
export const SERIES_WINDOW_MS = 6 * 60_000;
/** events.k8s.io/v1 validation limit on `note`, in bytes. */
export const NOTE_MAX_BYTES = 1024;
const MAX_ATTEMPTS = 3;
const RETRY_MS = 1_000;
/** Retry waits are never cut short: flush() is meant to see them through. */
const NEVER = new AbortController().signal;

interface Series {
  namespace: string;
  /** The Event's name once created. */
  name?: string;
  count: number;
  writtenCount: number;
  firstAt: number;
  lastAt: number;
  /** Body of the first occurrence, kept until it is created. */
  body: Record<string, unknown>;
  inflight?: Promise<void>;
}

/** Records Events for the operator; see the file comment for the dedup and failure rules. */
export class EventRecorder {
  private readonly o: EventRecorderOptions;
  private readonly clock: Clock;
  private readonly delay: Delay;
  private readonly log: (line: string) => void;
  private readonly api: EventApi;
  private readonly maxSeries: number;
  private readonly series = new Map<string, Series>();
  private readonly pending = new Set<Promise<void>>();
  private seq = 0;

  constructor(o: EventRecorderOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
    this.delay = o.delay ?? realDelay;
    this.log = o.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.api = o.api ?? eventApi(o.kc);
    this.maxSeries = o.maxSeries ?? 1000;
  }

  /** Records one occurrence. Returns at once; never throws. */
  record(regarding: EventRegarding, type: EventType, reason: string, action: string, note: string): void {
    try {
      const now = this.clock();
      const key = JSON.stringify([type, reason, action, regarding.apiVersion, regarding.kind, regarding.namespace ?? "", regarding.name, regarding.uid ?? ""]);
      let s = this.series.get(key);
      if (s && now - s.lastAt < SERIES_WINDOW_MS) {
        s.count++;
        s.lastAt = now;
        this.series.delete(key); // re-insert: Map order is our least-recently-seen order
        this.series.set(key, s);
      } else {
        s = this.newSeries(regarding, type, reason, action, note, now);
        this.series.delete(key);
        this.series.set(key, s);
        this.evict();
      }
      this.kick(s);
    } catch (err) {
      this.log(`events: dropped ${reason} for ${regarding.kind} ${regarding.name}: ${message(err)}`);
    }
  }

  /** Resolves when every write started so far (and the repeats folded into it) has finished. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  private newSeries(regarding: EventRegarding, type: EventType, reason: string, action: string, note: string, now: number): Series {
    // Cluster-scoped objects get their Events in "default", as client-go does.
    const namespace = regarding.namespace || "default";
    const body = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      // client-go's naming: <regarding>.<hex nanoseconds>; generateName would need a valid
      // name prefix, and the API server refuses one that ends in ".".
      metadata: { name: eventName(regarding.name, now, this.seq++), namespace },
      eventTime: microTime(now),
      reportingController: this.o.reportingController,
      reportingInstance: this.o.reportingInstance,
      action,
      reason,
      type,
      note: truncateUtf8(note, NOTE_MAX_BYTES),
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, namespace: regarding.namespace, name: regarding.name, uid: regarding.uid },
    };
    return { namespace, count: 1, writtenCount: 0, firstAt: now, lastAt: now, body };
  }

  private evict(): void {
    // A forgotten series whose write is still in flight finishes it; only its dedup is lost.
    for (const key of this.series.keys()) {
      if (this.series.size <= this.maxSeries) break;
      this.series.delete(key);
    }
  }

  /** Starts the series' writer unless one runs; it picks up whatever count it finds. */
  private kick(s: Series): void {
    if (s.inflight) return;
    const p = this.drain(s).finally(() => {
      s.inflight = undefined;
      this.pending.delete(p);
    });
    s.inflight = p;
    this.pending.add(p);
  }

  private async drain(s: Series): Promise<void> {
    while (s.writtenCount < s.count) {
      const target = s.count;
      const ok = await this.withRetries(s, async () => {
        if (!s.name) {
          let created: { metadata?: { name?: string } };
          try {
            created = await this.api.create(s.namespace, s.body);
          } catch (err) {
            // Name taken (two recorders, same nanosecond): the retry gets a fresh name.
            if (apiStatusCode(err) === 409) (s.body.metadata as { name: string }).name = eventName((s.body.regarding as EventRegarding).name, this.clock(), this.seq++);
            throw err;
          }
          s.name = created.metadata?.name;
          s.writtenCount = 1;
        } else {
          const series = { count: target, lastObservedTime: microTime(s.lastAt) };
          try {
            await this.api.patch(s.namespace, s.name, { series });
          } catch (err) {
            // Deleted meanwhile (TTL, someone): start over with a fresh Event.
            if (apiStatusCode(err) !== 404) throw err;
            s.name = undefined;
            s.writtenCount = 0;
            return;
          }
          s.writtenCount = target;
        }
      });
      if (!ok) {
        s.writtenCount = s.count; // give up on what we have; a later repeat tries again
        return;
      }
    }
  }

  private async withRetries(s: Series, write: () => Promise<void>): Promise<boolean> {
    const what = `${String(s.body.reason)} for ${(s.body.regarding as EventRegarding).kind} ${s.namespace}/${(s.body.regarding as EventRegarding).name}`;
    for (let attempt = 1; ; attempt++) {
      try {
        await write();
        return true;
      } catch (err) {
        const code = apiStatusCode(err);
        // 4xx other than 409/429 will not get better by retrying (invalid Event, forbidden).
        const retriable = code === undefined || code >= 500 || code === 429 || code === 409;
        if (!retriable || attempt >= MAX_ATTEMPTS) {
          this.log(`events: could not write ${what} (attempt ${attempt}): ${message(err)}`);
          return false;
        }
        await this.delay(RETRY_MS * attempt, NEVER);
      }
    }
  }
}

/** `<name>.<hex>`: nanoseconds since the epoch plus a sequence, within the 253-character limit. */
export function eventName(regardingName: string, nowMs: number, seq: number): string {
  const nanos = BigInt(Math.floor(nowMs)) * 1_000_000n + BigInt(seq % 1_000_000);
  return `${regardingName.slice(0, 253 - 17)}.${nanos.toString(16)}`;
}

/** Cuts `s` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, "utf8") <= maxBytes) return s;
  const ellipsis = "…";
  const budget = maxBytes - Buffer.byteLength(ellipsis, "utf8");
  let out = "";
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch, "utf8");
    if (bytes + n > budget) break;
    out += ch;
    bytes += n;
  }
  return out + ellipsis;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The Event API over the real API server. */
export function eventApi(kc: KubeConfig): EventApi {
  const collection = (ns: string) => `/apis/events.k8s.io/v1/namespaces/${seg(ns)}/events`;
  return {
    create: (namespace, event) => kubeRequest(kc, { method: "POST", path: collection(namespace), body: event, signal: AbortSignal.timeout(30_000) }),
    patch: (namespace, name, patch) =>
      kubeRequest(kc, { method: "PATCH", path: `${collection(namespace)}/${seg(name)}`, body: patch, contentType: MERGE_PATCH, signal: AbortSignal.timeout(30_000) }),
  };
}
