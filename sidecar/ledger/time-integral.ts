/**
 * The integral of a count over time (count-seconds): what a bill is built from. Every change of
 * the count first settles the time elapsed at the old count, so a read at any instant is exact
 * to the clock's resolution, open sockets and channels included, without a timer and with O(1)
 * work per change. The value only grows: counters built on it are monotonic.
 */
export class TimeIntegral {
  private settledSeconds: number;
  private count = 0;
  private sinceMs: number;

  constructor(nowMs: number, startSeconds = 0) {
    this.sinceMs = nowMs;
    this.settledSeconds = startSeconds;
  }

  /** The count changes by `delta` at `nowMs`. */
  add(delta: number, nowMs: number): void {
    this.settle(nowMs);
    this.count += delta;
  }

  /** Count-seconds accumulated up to `nowMs` (a clock that stepped back adds nothing). */
  secondsAt(nowMs: number): number {
    return this.settledSeconds + (this.count * Math.max(0, nowMs - this.sinceMs)) / 1000;
  }

  private settle(nowMs: number): void {
    if (nowMs <= this.sinceMs) return;
    this.settledSeconds = this.secondsAt(nowMs);
    this.sinceMs = nowMs;
  }
}
