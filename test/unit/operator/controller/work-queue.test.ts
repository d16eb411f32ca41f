import { describe, expect, it, vi } from "vitest";
import { TerminalError, WorkQueue, type WorkQueueMetrics, type WorkQueueProbe, type WorkResult } from "../../../../operator/controller/work-queue.js";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((res) => { resolve = res; });
  return { promise, resolve };
}
const tick = async (n = 3) => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };

/** A timer the test fires by hand; records every delay asked for. */
class ManualTimers {
  readonly delays: number[] = [];
  readonly cleared: unknown[] = [];
  private pending = new Map<number, () => void>();
  private next = 1;
  readonly setTimer = (fn: () => void, ms: number): unknown => {
    this.delays.push(ms);
    const id = this.next++;
    this.pending.set(id, fn);
    return id;
  };
  readonly clearTimer = (h: unknown): void => {
    this.cleared.push(h);
    this.pending.delete(h as number);
  };
  get size(): number { return this.pending.size; }
  fireAll(): void {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const fn of fns) fn();
  }
}

describe("WorkQueue", () => {
  it("runs a key added several times before it starts only once", async () => {
    const q = new WorkQueue({ concurrency: 2 });
    const runs: string[] = [];
    q.add("a"); q.add("a"); q.add("b"); q.add("a");
    expect(q.length).toBe(2);
    q.start(async (k) => { runs.push(k); });
    await tick();
    expect(runs).toEqual(["a", "b"]);
    await q.stop();
  });

  it("never runs one key twice at once; a key added while it runs runs exactly once more afterwards", async () => {
    const q = new WorkQueue({ concurrency: 4 });
    const gates = [deferred(), deferred()];
    let running = 0;
    let peak = 0;
    let runs = 0;
    q.start(async () => {
      const gate = gates[runs++]!;
      peak = Math.max(peak, ++running);
      await gate.promise;
      running--;
    });
    q.add("k");
    await tick();
    q.add("k"); q.add("k"); q.add("k");
    await tick();
    expect(runs).toBe(1);
    gates[0]!.resolve();
    await tick();
    expect(runs).toBe(2);
    gates[1]!.resolve();
    await tick();
    expect(runs).toBe(2);
    expect(peak).toBe(1);
    await q.stop();
  });

  it("runs different keys at once up to the concurrency", async () => {
    const q = new WorkQueue({ concurrency: 2 });
    const gate = deferred();
    const started: string[] = [];
    q.start(async (k) => { started.push(k); await gate.promise; });
    q.add("a"); q.add("b"); q.add("c");
    await tick();
    expect(started).toEqual(["a", "b"]);
    gate.resolve();
    await tick();
    expect(started).toEqual(["a", "b", "c"]);
    await q.stop();
  });

  it("retries a failing key with exponential backoff up to the maximum, and resets it after a success", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, baseBackoffMs: 10, maxBackoffMs: 50, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    let fail = true;
    let runs = 0;
    q.start(async () => { runs++; if (fail) throw new Error("nope"); });
    q.add("k");
    for (let i = 0; i < 5; i++) {
      await tick();
      timers.fireAll();
    }
    await tick();
    expect(runs).toBe(6);
    expect(timers.delays).toEqual([10, 20, 40, 50, 50, 50]);
    fail = false;
    timers.fireAll();
    await tick();
    expect(runs).toBe(7);
    fail = true;
    q.add("k");
    await tick();
    expect(timers.delays.at(-1)).toBe(10);
    await q.stop();
  });

  it("runs a key again after the requeueAfterMs its worker asked for", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    let runs = 0;
    q.start(async (): Promise<WorkResult> => { runs++; return { requeueAfterMs: 5000 }; });
    q.add("k");
    await tick();
    expect(runs).toBe(1);
    expect(timers.delays).toEqual([5000]);
    timers.fireAll();
    await tick();
    expect(runs).toBe(2);
    await q.stop();
  });

  it("runs a requeued key after the delay with real timers", async () => {
    const q = new WorkQueue({ concurrency: 1 });
    const at: number[] = [];
    q.start(async () => { at.push(performance.now()); return at.length < 2 ? { requeueAfterMs: 30 } : undefined; });
    q.add("k");
    await vi.waitFor(() => expect(at).toHaveLength(2), { timeout: 5000, interval: 5 }); // polled, not a fixed sleep
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(25);
    await q.stop();
  });

  it("addAfter: an earlier pending add wins over a later one, a sooner one replaces it", () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    q.addAfter("k", 1000);
    q.addAfter("k", 5000);
    expect(timers.delays).toEqual([1000]);
    q.addAfter("k", 100);
    expect(timers.delays).toEqual([1000, 100]);
    expect(timers.cleared).toHaveLength(1);
    expect(timers.size).toBe(1);
  });

  it("addAfter with no delay adds through a macrotask: the key runs only after the event loop turned", async () => {
    const q = new WorkQueue({ concurrency: 1 });
    const runs: string[] = [];
    q.start(async (k) => { runs.push(k); });
    q.addAfter("k", 0);
    expect(runs).toEqual([]);
    await tick();
    expect(runs).toEqual(["k"]);
    await q.stop();
  });

  it("forget drops a key's pending retry and its failure count", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, baseBackoffMs: 10, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    q.start(async () => { throw new Error("nope"); });
    q.add("k");
    await tick();
    timers.fireAll();
    await tick();
    expect(timers.delays).toEqual([10, 20]);
    q.forget("k");
    expect(timers.size).toBe(0);
    q.add("k");
    await tick();
    expect(timers.delays.at(-1)).toBe(10);
    await q.stop();
  });

  it("stop waits for the keys running now, then runs nothing more, and cancels pending retries", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 2, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    const gate = deferred();
    const runs: string[] = [];
    let finished = false;
    q.start(async (k) => {
      runs.push(k);
      if (k === "slow") { await gate.promise; finished = true; }
      return { requeueAfterMs: 1000 };
    });
    q.add("slow"); q.add("fast");
    await tick();
    expect(timers.size).toBe(1);
    let stopped = false;
    const stopping = q.stop().then(() => { stopped = true; });
    await tick();
    expect(stopped).toBe(false);
    expect(timers.size).toBe(0);
    q.add("slow");
    q.add("late");
    gate.resolve();
    await stopping;
    expect(finished).toBe(true);
    await tick();
    expect(runs).toEqual(["slow", "fast"]);
    expect(timers.size).toBe(0);
  });

  it("stop resolves at once when nothing runs", async () => {
    const q = new WorkQueue({ concurrency: 1 });
    q.start(async () => undefined);
    await expect(q.stop()).resolves.toBeUndefined();
  });
});

/**
 * A worker that counts its runs and, past `limit`, parks its key forever: on a queue that spins
 * in microtasks this turns a hang of the whole test process into a failed count.
 */
function countingWorker(limit: number, body: (key: string) => WorkResult = () => undefined) {
  const runs = new Map<string, number>();
  const worker = async (key: string): Promise<WorkResult> => {
    const n = (runs.get(key) ?? 0) + 1;
    runs.set(key, n);
    if (n > limit) await new Promise<never>(() => undefined);
    return body(key);
  };
  return { runs, worker, count: (key: string) => runs.get(key) ?? 0 };
}

/** Resolves on the next turn of the event loop (after pending I/O), with what `read` says then. */
const atNextTurn = <T>(read: () => T) => new Promise<T>((resolve) => setImmediate(() => resolve(read())));

describe("WorkQueue: never spins a key without yielding to I/O", () => {
  it("a worker asking for requeueAfterMs 0 does not run its key again before the event loop turns", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    const w = countingWorker(1000, () => ({ requeueAfterMs: 0 }));
    q.start(w.worker);
    q.add("k");
    const runsAtTurn = await atNextTurn(() => w.count("k"));
    expect(runsAtTurn).toBeLessThanOrEqual(1);
    // 0 is floored to the queue's minimum delay: a timer, not a synchronous add.
    await tick();
    expect(w.count("k")).toBe(1);
    expect(timers.delays.every((ms) => ms >= 1)).toBe(true);
    await q.stop();
  });

  it("a key re-added by every run of it (an update event per reconcile) runs at most once per turn of the event loop", async () => {
    const q = new WorkQueue({ concurrency: 1 });
    const w = countingWorker(1000, (key) => { q.add(key); });
    q.start(w.worker);
    q.add("k");
    const first = await atNextTurn(() => w.count("k"));
    const second = await atNextTurn(() => w.count("k"));
    expect(first).toBeLessThanOrEqual(2);
    expect(second - first).toBeLessThanOrEqual(2);
    await q.stop();
  });

  it("forget while a key runs drops its requeue and a re-add that came during the run", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({ concurrency: 1, setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    const gate = deferred();
    let runs = 0;
    q.start(async () => { runs++; await gate.promise; return { requeueAfterMs: 1000 }; });
    q.add("k");
    await tick();
    q.add("k");
    q.forget("k");
    gate.resolve();
    await tick();
    expect(runs).toBe(1);
    expect(timers.size).toBe(0);
    // A later add (the policy was created again) runs as usual.
    q.add("k");
    await tick();
    expect(runs).toBe(2);
    await q.stop();
  });

  it("forget drops a queued key before it runs", async () => {
    const q = new WorkQueue({ concurrency: 1 });
    const gate = deferred();
    const runs: string[] = [];
    q.start(async (k) => { runs.push(k); if (k === "a") await gate.promise; });
    q.add("a"); q.add("b");
    await tick();
    q.forget("b");
    expect(q.length).toBe(0);
    gate.resolve();
    await tick();
    expect(runs).toEqual(["a"]);
    await q.stop();
  });
});

describe("WorkQueue: errors", () => {
  it("retries a TerminalError at the delay it carries, without growing backoff and without counting a retry", async () => {
    const timers = new ManualTimers();
    const retries: string[] = [];
    const terminal: string[] = [];
    const q = new WorkQueue({
      concurrency: 1, baseBackoffMs: 10, setTimer: timers.setTimer, clearTimer: timers.clearTimer,
      metrics: { ...noMetrics(), retried: () => retries.push("k"), terminal: () => terminal.push("k") },
    });
    q.start(async () => { throw new TerminalError("422 Invalid: status.topics[0].name too long", 5000); });
    q.add("k");
    for (let i = 0; i < 3; i++) {
      await tick();
      timers.fireAll();
    }
    await tick();
    expect(timers.delays).toEqual([5000, 5000, 5000, 5000]);
    expect(retries).toEqual([]);
    expect(terminal).toHaveLength(4);
    await q.stop();
  });

  it("caps a key's backoff at what maxBackoffMs says for that key (its policy's interval)", async () => {
    const timers = new ManualTimers();
    const q = new WorkQueue({
      concurrency: 1, baseBackoffMs: 10, maxBackoffMs: (key) => (key === "fast" ? 30 : 60_000),
      setTimer: timers.setTimer, clearTimer: timers.clearTimer,
    });
    q.start(async () => { throw new Error("503"); });
    q.add("fast");
    for (let i = 0; i < 4; i++) {
      await tick();
      timers.fireAll();
    }
    expect(timers.delays).toEqual([10, 20, 30, 30]);
    await q.stop();
  });
});

function noMetrics(): WorkQueueMetrics {
  return { depth: () => undefined, added: () => undefined, queueLatency: () => undefined, workDuration: () => undefined, retried: () => undefined, terminal: () => undefined };
}

describe("WorkQueue: metrics like client-go's workqueue", () => {
  it("reports depth, adds, queue latency, work duration and retries, and the time unfinished work has been running", async () => {
    const timers = new ManualTimers();
    let nowMs = 0;
    const seen = { depth: [] as number[], adds: 0, latency: [] as number[], work: [] as number[], retries: 0 };
    let probe: WorkQueueProbe | undefined;
    const q = new WorkQueue({
      concurrency: 1, baseBackoffMs: 10, setTimer: timers.setTimer, clearTimer: timers.clearTimer, now: () => nowMs,
      metrics: {
        depth: (n) => seen.depth.push(n), added: () => seen.adds++, queueLatency: (s) => seen.latency.push(s),
        workDuration: (s) => seen.work.push(s), retried: () => seen.retries++, terminal: () => undefined,
        bind: (p) => { probe = p; },
      },
    });
    const gate = deferred();
    let fail = true;
    q.start(async (k) => { nowMs += 250; await gate.promise; if (fail && k === "a") throw new Error("boom"); });
    q.add("a"); q.add("a"); q.add("b");
    expect(seen.adds).toBe(2);
    expect(seen.depth.at(-1)).toBe(2);
    nowMs = 1000;
    await tick();
    expect(seen.latency).toEqual([1]);
    expect(seen.depth.at(-1)).toBe(1);
    nowMs += 500;
    expect(probe!.unfinishedWorkSeconds()).toBe(0.75);
    expect(probe!.longestRunningSeconds()).toBe(0.75);
    gate.resolve();
    await tick();
    expect(seen.work[0]).toBe(0.75);
    expect(seen.retries).toBe(1);
    fail = false;
    await tick();
    expect(seen.latency).toHaveLength(2);
    expect(probe!.unfinishedWorkSeconds()).toBe(0);
    await q.stop();
  });
});
