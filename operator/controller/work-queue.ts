// A work queue like client-go's: keys are deduplicated, one key never runs twice at once (a key
// added while it runs runs once more afterwards), failures are retried with per-key exponential
// backoff, and a worker may ask to run a key again after a delay.
//
// It never runs a key twice without yielding to I/O: keys are taken off the queue only in a
// macrotask (setImmediate), and a worker's requeue goes through a timer of at least
// `minRequeueMs`. A queue that re-added synchronously spun a deleted policy's key in microtasks
// forever, starving every socket and timer of the process (issue 14, point 1).

/** What a worker returns: run the key again after this long (undefined: only on the next add). */
export type WorkResult = { requeueAfterMs?: number } | void;

/**
 * An error that retrying sooner cannot fix (an invalid write, a forbidden verb): the key is
 * retried after `requeueAfterMs` exactly, without exponential backoff and without counting a
 * retry (undefined: only on the next add), like controller-runtime's `reconcile.TerminalError`.
 */
export class TerminalError extends Error {
  override readonly name = "TerminalError";
  constructor(
    message: string,
    /** Run the key again after this long (ms), e.g. the policy's interval; undefined: only on the next add. */
    readonly requeueAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Reads of the queue's running work, for gauges computed at scrape time. */
export interface WorkQueueProbe {
  /** Sum over the keys running now of how long each has run, in seconds (client-go's unfinished_work_seconds). */
  unfinishedWorkSeconds(): number;
  /** How long the longest-running key has run, in seconds (0 when none runs). */
  longestRunningSeconds(): number;
}

/** Hooks for the queue's metrics (operator/admin/metrics.ts implements them with prom-client). */
export interface WorkQueueMetrics {
  /** Keys waiting (not running), after every change. */
  depth(keys: number): void;
  /** A key was queued, or marked to run again after its current run. */
  added(): void;
  /** Time a key waited in the queue before it started, in seconds. */
  queueLatency(seconds: number): void;
  /** Time one run of a key took, in seconds. */
  workDuration(seconds: number): void;
  /** A failed key was scheduled again with backoff. */
  retried(): void;
  /** A key failed with a TerminalError (not retried with backoff). */
  terminal(): void;
  /** Called once by the queue so gauges can read its running work. */
  bind?(probe: WorkQueueProbe): void;
}

export interface WorkQueueOptions {
  /** Keys processed at once (different keys only). */
  concurrency: number;
  /** First retry delay after a failure, in ms, doubled per consecutive failure of the key. */
  baseBackoffMs?: number;
  /** Longest retry delay after failures, in ms (default 60 000); per key when a function (e.g. the policy's interval). */
  maxBackoffMs?: number | ((key: string) => number);
  /** Shortest delay of a requeue a worker asks for, in ms (default 100): 0 never means "run again now". */
  minRequeueMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** Runs `fn` in a later macrotask, after pending I/O (default setImmediate). */
  defer?: (fn: () => void) => void;
  /** A monotonic clock in ms, for the metrics (default performance.now). */
  now?: () => number;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Queued keys and when they were queued (ms, opts.now), for the queue latency. */
  private readonly queued = new Map<string, number>();
  /** Running keys and when they started (ms, opts.now). */
  private readonly running = new Map<string, number>();
  /** Keys added while they ran: they go back on the queue when the run ends. */
  private readonly dirty = new Set<string>();
  /** Keys forgotten while they ran: the run's result must not requeue them. */
  private readonly forgotten = new Set<string>();
  private readonly timers = new Map<string, { at: number; handle: unknown }>();
  private readonly failures = new Map<string, number>();
  private stopped = true;
  private pumpScheduled = false;
  private worker: ((key: string) => Promise<WorkResult>) | undefined;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly now: () => number;

  constructor(private readonly opts: WorkQueueOptions) {
    this.now = opts.now ?? (() => performance.now());
    opts.metrics?.bind?.({
      unfinishedWorkSeconds: () => [...this.running.values()].reduce((sum, at) => sum + (this.now() - at), 0) / 1000,
      longestRunningSeconds: () => Math.max(0, ...[...this.running.values()].map((at) => this.now() - at)) / 1000,
    });
  }

  start(worker: (key: string) => Promise<WorkResult>): void {
    this.worker = worker;
    this.stopped = false;
    this.schedulePump();
  }

  /** Stops taking keys; resolves when the keys running now are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { handle } of this.timers.values()) this.clearTimer(handle);
    this.timers.clear();
    if (this.running.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  add(key: string): void {
    this.forgotten.delete(key);
    if (this.running.has(key)) {
      if (!this.dirty.has(key)) this.opts.metrics?.added();
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.set(key, this.now());
    this.queue.push(key);
    this.opts.metrics?.added();
    this.opts.metrics?.depth(this.queue.length);
    this.schedulePump();
  }

  /** Adds `key` after `ms` (0: in a later macrotask); an earlier pending add of the same key wins. */
  addAfter(key: string, ms: number): void {
    if (ms <= 0) return this.add(key);
    const at = this.now() + ms;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.clearTimer(pending.handle);
    const handle = (this.opts.setTimer ?? setTimeout)(() => {
      this.timers.delete(key);
      if (!this.stopped) this.add(key);
    }, ms);
    this.timers.set(key, { at, handle });
  }

  /**
   * Drops everything the queue holds for a key (its object was deleted): a queued run, a pending
   * retry or requeue, its failure count, and the requeue of a run in progress. A later add()
   * runs it again as new.
   */
  forget(key: string): void {
    const pending = this.timers.get(key);
    if (pending) this.clearTimer(pending.handle);
    this.timers.delete(key);
    this.failures.delete(key);
    this.dirty.delete(key);
    if (this.queued.delete(key)) {
      this.queue.splice(this.queue.indexOf(key), 1);
      this.opts.metrics?.depth(this.queue.length);
    }
    if (this.running.has(key)) this.forgotten.add(key);
  }

  get length(): number {
    return this.queue.length;
  }

  private clearTimer(handle: unknown): void {
    (this.opts.clearTimer ?? clearTimeout)(handle as NodeJS.Timeout);
  }

  /** Starts keys in a later macrotask, never in the call that queued them. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    (this.opts.defer ?? setImmediate)(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.stopped && this.worker && this.running.size < this.opts.concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      const queuedAt = this.queued.get(key)!;
      this.queued.delete(key);
      const startedAt = this.now();
      this.running.set(key, startedAt);
      this.opts.metrics?.depth(this.queue.length);
      this.opts.metrics?.queueLatency((startedAt - queuedAt) / 1000);
      void this.runOne(key, startedAt);
    }
  }

  private async runOne(key: string, startedAt: number): Promise<void> {
    let retryAfter: number | undefined;
    try {
      const result = await this.worker!(key);
      this.failures.delete(key);
      // A worker's 0 (or a negative delay) is floored: it asks for "soon", never "at once".
      if (result?.requeueAfterMs !== undefined) retryAfter = Math.max(this.opts.minRequeueMs ?? 100, result.requeueAfterMs);
    } catch (err) {
      retryAfter = this.retryDelay(key, err);
    } finally {
      this.running.delete(key);
      this.opts.metrics?.workDuration((this.now() - startedAt) / 1000);
    }
    const forgotten = this.forgotten.delete(key);
    if (!this.stopped && !forgotten) {
      if (this.dirty.delete(key)) this.add(key);
      else if (retryAfter !== undefined) this.addAfter(key, retryAfter);
    }
    if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    this.schedulePump();
  }

  /** The delay before a failed key runs again: a TerminalError's own, else exponential backoff. */
  private retryDelay(key: string, err: unknown): number | undefined {
    if (err instanceof TerminalError) {
      this.failures.delete(key);
      this.opts.metrics?.terminal();
      return err.requeueAfterMs;
    }
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    this.opts.metrics?.retried();
    const max = typeof this.opts.maxBackoffMs === "function" ? this.opts.maxBackoffMs(key) : (this.opts.maxBackoffMs ?? 60_000);
    return Math.min(max, (this.opts.baseBackoffMs ?? 5) * 2 ** (n - 1));
  }
}
