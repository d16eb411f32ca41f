// Spike detection (issue 18): the cluster's WebSocket upgrade and channel join rates over the
// last minute against spikeFactor × their rate over the hour before (with a floor, so a quiet
// cluster does not trip). Pure apart from what it remembers; the reconciler feeds it each
// scrape's counters and the clock, and maps its state to condition FloodDetected, Events and,
// with action throttle, tighter token buckets pushed to every sidecar.
import type { FloodProtectionSpec } from "../api/types.js";

/** The window whose rate is compared, and the baseline before it. */
export const SPIKE_WINDOW_MS = 60_000;
export const BASELINE_WINDOW_MS = 3_600_000;
/** Baseline needed before anything is judged: a new operator does not throttle on a guess. */
export const MIN_BASELINE_MS = 300_000;

/** One pod's attempt counters at a scrape; `since` tells a restarted sidecar (its counters began again). */
export interface AttemptSample {
  pod: string;
  since: string;
  upgrades: number;
  joins: number;
}

/** Rates in per second: now (last minute), the baseline, and the threshold now is compared with. */
export interface SignalReading {
  perSecond: number;
  baselinePerSecond: number;
  thresholdPerSecond: number;
}

export interface FloodReading {
  upgrades: SignalReading;
  joins: SignalReading;
}

/** Per-pod token buckets pushed while throttling. */
export interface Throttle {
  upgradeRatePerSecond: number;
  joinRatePerSecond: number;
}

export type FloodState =
  | { phase: "collecting"; baselineSeconds: number }
  | { phase: "normal"; reading: FloodReading }
  | {
    phase: "flood"; reading: FloodReading; sinceMs: number; signals: ("upgrades" | "joins")[]; throttle: Throttle | undefined; quietSinceMs: number | undefined;
    /** The numbers when it began (the condition shows these: live ones would rewrite the status every scrape). */
    onset: FloodReading;
  };

export interface FloodObservation {
  state: FloodState;
  /** Set on the scrape where a flood began or ended (for Events). */
  transition: "started" | "cleared" | undefined;
}

interface Interval {
  atMs: number;
  spanMs: number;
  upgrades: number;
  joins: number;
  /** Seen during a flood: left out of later baselines, so a flood does not raise its own bar. */
  flood: boolean;
}

export class FloodDetector {
  private readonly pods = new Map<string, AttemptSample>();
  private readonly intervals: Interval[] = [];
  private lastMs: number | undefined;
  private state: FloodState = { phase: "collecting", baselineSeconds: 0 };
  /** Thresholds frozen when a flood began: the flood's own minutes never move them. */
  private frozen: FloodReading | undefined;

  /** One scrape: the cluster's increase since the last one, then the verdict. */
  observe(samples: readonly AttemptSample[], podCount: number, spec: FloodProtectionSpec, nowMs: number): FloodObservation {
    const { upgrades, joins } = this.increase(samples);
    if (this.lastMs !== undefined && nowMs > this.lastMs) {
      this.intervals.push({ atMs: nowMs, spanMs: nowMs - this.lastMs, upgrades, joins, flood: this.state.phase === "flood" });
    }
    this.lastMs = nowMs;
    while (this.intervals.length > 0 && this.intervals[0]!.atMs <= nowMs - BASELINE_WINDOW_MS - SPIKE_WINDOW_MS) this.intervals.shift();
    const wasFlood = this.state.phase === "flood";
    const next = this.judge(spec, podCount, nowMs);
    this.state = next;
    const isFlood = next.phase === "flood";
    return { state: next, transition: !wasFlood && isFlood ? "started" : wasFlood && !isFlood ? "cleared" : undefined };
  }

  retain(pods: ReadonlySet<string>): void {
    for (const name of this.pods.keys()) if (!pods.has(name)) this.pods.delete(name);
  }

  private judge(spec: FloodProtectionSpec, podCount: number, nowMs: number): FloodState {
    const recent = this.rates(nowMs - SPIKE_WINDOW_MS, nowMs, true);
    const base = this.rates(nowMs - SPIKE_WINDOW_MS - BASELINE_WINDOW_MS, nowMs - SPIKE_WINDOW_MS, false);
    const live = this.frozen ?? reading(recent, base, spec);
    const current: FloodReading = {
      upgrades: { ...live.upgrades, perSecond: recent.upgrades },
      joins: { ...live.joins, perSecond: recent.joins },
    };
    const over = (["upgrades", "joins"] as const).filter((s) => current[s].perSecond > current[s].thresholdPerSecond);
    if (this.state.phase === "flood") {
      if (over.length > 0) return { ...this.state, reading: current, signals: over, quietSinceMs: undefined };
      const quietSinceMs = this.state.quietSinceMs ?? nowMs;
      if (nowMs - quietSinceMs < spec.cooldownSeconds * 1000) return { ...this.state, reading: current, quietSinceMs };
      this.frozen = undefined;
      return { phase: "normal", reading: reading(recent, base, spec) };
    }
    if (base.spanMs < MIN_BASELINE_MS) return { phase: "collecting", baselineSeconds: Math.floor(base.spanMs / 1000) };
    if (over.length === 0) return { phase: "normal", reading: current };
    this.frozen = current;
    // The minute that tripped is the flood's: keep it out of later baselines too.
    for (const i of this.intervals) if (i.atMs > nowMs - SPIKE_WINDOW_MS) i.flood = true;
    const perPod = (threshold: number) => Math.max(1, Math.floor(threshold / Math.max(1, podCount)));
    const throttle = spec.action === "throttle"
      ? { upgradeRatePerSecond: perPod(current.upgrades.thresholdPerSecond), joinRatePerSecond: perPod(current.joins.thresholdPerSecond) }
      : undefined;
    return { phase: "flood", reading: current, sinceMs: nowMs, signals: over, throttle, quietSinceMs: undefined, onset: current };
  }

  /** Rates per second over the intervals ending in (fromMs, toMs]; the baseline skips flood intervals. */
  private rates(fromMs: number, toMs: number, includeFlood: boolean): { upgrades: number; joins: number; spanMs: number } {
    let spanMs = 0;
    let upgrades = 0;
    let joins = 0;
    for (const i of this.intervals) {
      if (i.atMs <= fromMs || i.atMs > toMs || (i.flood && !includeFlood)) continue;
      spanMs += i.spanMs;
      upgrades += i.upgrades;
      joins += i.joins;
    }
    const per = (n: number) => (spanMs > 0 ? n / (spanMs / 1000) : 0);
    return { upgrades: per(upgrades), joins: per(joins), spanMs };
  }

  /** The cluster's increase since the last scrape: per pod, from its last sample of the same sidecar; a new or restarted one is a baseline. */
  private increase(samples: readonly AttemptSample[]): { upgrades: number; joins: number } {
    let upgrades = 0;
    let joins = 0;
    for (const s of samples) {
      const last = this.pods.get(s.pod);
      if (last !== undefined && last.since === s.since) {
        upgrades += Math.max(0, s.upgrades - last.upgrades);
        joins += Math.max(0, s.joins - last.joins);
      }
      this.pods.set(s.pod, s);
    }
    return { upgrades, joins };
  }
}

function reading(recent: { upgrades: number; joins: number }, base: { upgrades: number; joins: number }, spec: FloodProtectionSpec): FloodReading {
  const signal = (now: number, baseline: number): SignalReading => ({
    perSecond: now, baselinePerSecond: baseline, thresholdPerSecond: Math.max(spec.minRatePerSecond, spec.spikeFactor * baseline),
  });
  return { upgrades: signal(recent.upgrades, base.upgrades), joins: signal(recent.joins, base.joins) };
}

/** A rate for people: two significant decimals at most. */
export function perSecond(n: number): string {
  return `${Number(n.toFixed(n < 10 ? 2 : 1))}/s`;
}

/** The condition's message: the numbers behind the verdict. */
export function describeReading(r: FloodReading, spec: FloodProtectionSpec): string {
  const one = (name: string, s: SignalReading) =>
    `${name} ${perSecond(s.perSecond)} over the last minute, threshold ${perSecond(s.thresholdPerSecond)} (max of floor ${spec.minRatePerSecond}/s and ${spec.spikeFactor} × ${perSecond(s.baselinePerSecond)} over the previous hour)`;
  return `${one("upgrades", r.upgrades)}; ${one("joins", r.joins)}`;
}
