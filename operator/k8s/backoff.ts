// Retry pacing shared by the informer, the leader elector and the event recorder: the clock,
// the sleep and the randomness are injected so that tests drive time instead of waiting.

/**
 * Milliseconds since some fixed point. Durations are measured on a monotonic clock
 * (`monotonicNow`, the default everywhere in this folder): the wall clock can be stepped by
 * NTP or by hand, which would end a backoff, a lease or a watch timeout early or never.
 */
export type Clock = () => number;

/** Monotonic milliseconds (performance.now: since process start, never steps back). */
export const monotonicNow: Clock = () => performance.now();
/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export type Delay = (ms: number, signal: AbortSignal) => Promise<void>;

/** setTimeout-based Delay; the timer is cleared on abort so a stopped loop leaves nothing behind. */
export const realDelay: Delay = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

export interface BackoffOptions {
  initialMs?: number;
  capMs?: number;
  factor?: number;
  /** Extra random fraction of the step: delay = step × (1 + jitter × random()), then capped. */
  jitter?: number;
  /** A failure this long after the previous one starts again from initialMs. */
  resetAfterMs?: number;
  /** Monotonic by default (monotonicNow). */
  clock?: Clock;
  random?: () => number;
}

/**
 * Exponential backoff with jitter, shaped like client-go's reflector backoff manager: 800 ms,
 * doubling to a 30 s cap, jitter 1.0, and back to 800 ms once two minutes pass without a
 * failure. The jitter spreads the retries of many operator replicas (or many informers of one)
 * after an API server restart so they do not return in lockstep.
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly capMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly resetAfterMs: number;
  private readonly clock: Clock;
  private readonly random: () => number;
  private stepMs: number;
  private lastFailureAt: number | undefined;

  constructor(o: BackoffOptions = {}) {
    this.initialMs = o.initialMs ?? 800;
    this.capMs = o.capMs ?? 30_000;
    this.factor = o.factor ?? 2;
    this.jitter = o.jitter ?? 1;
    this.resetAfterMs = o.resetAfterMs ?? 120_000;
    this.clock = o.clock ?? monotonicNow;
    this.random = o.random ?? Math.random;
    this.stepMs = this.initialMs;
  }

  /** Records a failure now and returns how long to wait before the next try (ms). */
  next(): number {
    const now = this.clock();
    if (this.lastFailureAt !== undefined && now - this.lastFailureAt >= this.resetAfterMs) this.stepMs = this.initialMs;
    this.lastFailureAt = now;
    const delayMs = Math.min(this.capMs, this.stepMs * (1 + this.jitter * this.random()));
    this.stepMs = Math.min(this.capMs, this.stepMs * this.factor);
    return Math.round(delayMs);
  }
}
