// Virtual time for the operator/k8s unit tests: an injectable clock and delay, advanced by hand.
// Fakes in these tests answer at once (resolved promises), so letting the event loop turn
// once (setImmediate) runs everything that became runnable.

interface Timer {
  at: number;
  resolve: () => void;
}

export class FakeTime {
  now = 0;
  /** Every delay asked for, in ms, in order. */
  readonly delays: number[] = [];
  private timers: Timer[] = [];

  readonly clock = (): number => this.now;

  readonly delay = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      this.delays.push(ms);
      const timer: Timer = { at: this.now + ms, resolve };
      this.timers.push(timer);
      signal.addEventListener("abort", () => {
        this.timers = this.timers.filter((t) => t !== timer);
        reject(signal.reason as Error);
      }, { once: true });
    });

  /** Moves time forward by `ms`, firing due timers in order and letting their work run. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    await settle();
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > target) break;
      this.timers.shift();
      // A timer overdue because a test moved `now` by hand (a simulated stall) fires late, at
      // the current time, as a real one does after the event loop was blocked.
      this.now = Math.max(this.now, next.at);
      next.resolve();
      await settle();
    }
    this.now = target;
    await settle();
  }
}

/** Lets pending promise chains (and a few turns of the loop) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
