/**
 * Runs at most `max` tasks at once over every lane (one lane per ConnectionPolicy), so
 * `--max-concurrent-scrapes` bounds the operator's open sockets and its bursts of work. When
 * tasks wait, a freed slot goes to the lanes in turn (round-robin), not to the oldest task:
 * a policy with a thousand pods on a dead node holds at most the slots it had, and another
 * policy's few pods start at the next slots freed, not after the thousand.
 */
export class FairLimiter {
  private running = 0;
  /** Waiting tasks per lane, in order; a lane is here only while it has some. */
  private readonly lanes = new Map<string, (() => void)[]>();
  /** Lanes with waiting tasks, in the order they are served. */
  private readonly turn: string[] = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`concurrency must be a positive integer, got ${max}`);
  }

  /** Tasks running now. */
  get active(): number {
    return this.running;
  }

  /** Tasks waiting for a slot, over every lane. */
  get waiting(): number {
    let n = 0;
    for (const q of this.lanes.values()) n += q.length;
    return n;
  }

  async run<T>(lane: string, task: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      await new Promise<void>((resolve) => this.enqueue(lane, resolve));
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  private enqueue(lane: string, start: () => void): void {
    const q = this.lanes.get(lane);
    if (q) {
      q.push(start);
      return;
    }
    this.lanes.set(lane, [start]);
    this.turn.push(lane);
  }

  /** Hands the freed slot to the next lane's first waiting task (the slot stays taken), else frees it. */
  private release(): void {
    const lane = this.turn.shift();
    if (lane === undefined) {
      this.running--;
      return;
    }
    const q = this.lanes.get(lane)!;
    const start = q.shift()!;
    if (q.length > 0) this.turn.push(lane);
    else this.lanes.delete(lane);
    start();
  }
}
