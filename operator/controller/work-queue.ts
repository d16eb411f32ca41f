// A work queue like client-go's: keys are deduplicated, one key never runs twice at once (a key
// added while it runs runs once more afterwards), failures are retried with per-key exponential
// backoff, and a worker may ask to run a key again after a delay.

export interface WorkQueueOptions {
  /** Keys processed at once (different keys only). */
  concurrency: number;
  /** First retry delay after a failure, doubled per consecutive failure of the key. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** What a worker returns: run the key again after this long (undefined: only on the next add). */
export type WorkResult = { requeueAfterMs?: number } | void;

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  /** Keys added while they ran: they go back on the queue when the run ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; handle: unknown }>();
  private readonly failures = new Map<string, number>();
  private active = 0;
  private stopped = true;
  private worker: ((key: string) => Promise<WorkResult>) | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: WorkQueueOptions) {}

  start(worker: (key: string) => Promise<WorkResult>): void {
    this.worker = worker;
    this.stopped = false;
    this.pump();
  }

  /** Stops taking keys; resolves when the keys running now are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { handle } of this.timers.values()) (this.opts.clearTimer ?? clearTimeout)(handle as NodeJS.Timeout);
    this.timers.clear();
    if (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  add(key: string): void {
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Adds `key` after `ms`; an earlier pending add of the same key wins. */
  addAfter(key: string, ms: number): void {
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) (this.opts.clearTimer ?? clearTimeout)(pending.handle as NodeJS.Timeout);
    const handle = (this.opts.setTimer ?? setTimeout)(() => {
      this.timers.delete(key);
      if (!this.stopped) this.add(key);
    }, ms);
    this.timers.set(key, { at, handle });
  }

  /** Drops a key's pending retries and failure count (its object was deleted). */
  forget(key: string): void {
    const pending = this.timers.get(key);
    if (pending) (this.opts.clearTimer ?? clearTimeout)(pending.handle as NodeJS.Timeout);
    this.timers.delete(key);
    this.failures.delete(key);
  }

  get length(): number {
    return this.queue.length;
  }

  private pump(): void {
    while (!this.stopped && this.worker && this.active < this.opts.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      this.active++;
      void this.runOne(key);
    }
  }

  private async runOne(key: string): Promise<void> {
    let retryAfter: number | undefined;
    try {
      const result = await this.worker!(key);
      this.failures.delete(key);
      retryAfter = result?.requeueAfterMs;
    } catch {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      retryAfter = Math.min(this.opts.maxBackoffMs ?? 60_000, (this.opts.baseBackoffMs ?? 5) * 2 ** (n - 1));
    } finally {
      this.running.delete(key);
      this.active--;
    }
    if (!this.stopped) {
      if (this.dirty.delete(key)) this.add(key);
      else if (retryAfter !== undefined) this.addAfter(key, retryAfter);
    }
    if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
    this.pump();
  }
}
