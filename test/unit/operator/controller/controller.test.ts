// The controller end to end over a fake cluster (fake-cluster.ts): a real work queue, a real
// reconciler, watch events delivered in later macrotasks. Each test counts reconciles; past
// 1,000 runs of one key its reconcile throws, which sends even a queue spinning in microtasks
// to its backoff timers: a spin fails a count instead of hanging the test process.
import { afterEach, describe, expect, it } from "vitest";
import { CLEANUP_FINALIZER } from "../../../../operator/api/types.js";
import { PolicyController } from "../../../../operator/controller/controller.js";
import type { Reconciler } from "../../../../operator/controller/reconciler.js";
import { FakeCluster, NS, OTHER_FINALIZER, T0, pod, sample } from "./fake-cluster.js";

const SPIN_LIMIT = 1000;

/** Counts reconcile() calls per key; past SPIN_LIMIT calls of a key, they throw. */
function countReconciles(reconciler: Reconciler) {
  const counts = new Map<string, number>();
  const original = reconciler.reconcile.bind(reconciler);
  reconciler.reconcile = async (key) => {
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    if (n > SPIN_LIMIT) throw new Error(`${key} reconciled ${n} times: the queue spins`);
    return original(key);
  };
  return (name: string) => counts.get(`${NS}/${name}`) ?? 0;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((res) => { resolve = res; });
  return { promise, resolve };
}

/** Resolves in the next turn of the event loop with what `read` says then. */
const atNextTurn = <T>(read: () => T) => new Promise<T>((resolve) => setImmediate(() => resolve(read())));
const turns = async (n: number) => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };
/** A window of real time in which a spinning key would run thousands of times; the tests assert counts, not durations. */
const window = () => new Promise((r) => setTimeout(r, 300));

/** Two workloads, `chat` (pods .1, .2) and `lobby` (pod .9), every sidecar answering. */
function cluster(): FakeCluster {
  const c = new FakeCluster();
  c.addDeployment("chat", 2);
  c.addDeployment("lobby", 1);
  c.caches.pods.items.push(pod("chat-a", "198.18.0.1"), pod("chat-b", "198.18.0.2"), pod("lobby-a", "198.18.0.9", "lobby"));
  for (const ip of ["198.18.0.1", "198.18.0.2", "198.18.0.9"]) c.answers.set(ip, sample(3));
  return c;
}

const lobbyPolicy = { targetRef: { apiVersion: "apps/v1", kind: "Deployment" as const, name: "lobby" } };

let controller: PolicyController | undefined;
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
});

describe("PolicyController: deleted policies never freeze the operator", () => {
  it("a deleted policy held by another tool's finalizer is reconciled a bounded number of times; the loop stays responsive and other policies keep being reconciled", async () => {
    const c = cluster();
    c.addPolicy("held", {}, { deletionTimestamp: new Date(T0).toISOString(), finalizers: [OTHER_FINALIZER] });
    c.addPolicy("live", lobbyPolicy);
    const reconciler = c.reconciler();
    const count = countReconciles(reconciler);
    controller = new PolicyController(c.caches, reconciler, c.metrics, () => undefined, 2);
    controller.start(c.sources);
    const heldAtFirstTurns = await atNextTurn(() => count("held"));
    expect(heldAtFirstTurns).toBeLessThanOrEqual(1);
    await window();
    expect(count("held")).toBeLessThanOrEqual(2);
    expect(count("live")).toBeGreaterThanOrEqual(1);
    expect(c.ops("status").some((w) => w.name === "live")).toBe(true);
    // Nothing of ours to clean up and no finalizer of ours: the other tool's is left alone.
    expect(c.policy("held")?.metadata.finalizers).toEqual([OTHER_FINALIZER]);
    expect(c.ops("finalizers").filter((w) => w.name === "held")).toEqual([]);
  });

  it("a deletion landing mid-reconcile (its /stats held) cleans up once, removes only connmeter's finalizer, and stops", async () => {
    const c = cluster();
    c.addPolicy("a", { limits: { maxConnections: 100 } }, { finalizers: [OTHER_FINALIZER] });
    c.addPolicy("b", lobbyPolicy);
    const gate = deferred();
    c.gates.set("198.18.0.1", gate.promise);
    const reconciler = c.reconciler();
    const count = countReconciles(reconciler);
    controller = new PolicyController(c.caches, reconciler, c.metrics, () => undefined, 2);
    controller.start(c.sources);
    for (let i = 0; i < 50 && !c.scrapes.includes("198.18.0.1"); i++) await turns(1);
    expect(c.scrapes).toContain("198.18.0.1");
    c.deletePolicy("a");
    await turns(3);
    gate.resolve();
    await window();
    expect(count("a")).toBeLessThanOrEqual(3);
    expect(count("b")).toBeGreaterThanOrEqual(1);
    expect(c.policy("a")?.metadata.finalizers).toEqual([OTHER_FINALIZER]);
    expect(c.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
  });

  it("a deletion landing while the key waits in the queue drops it: it never runs", async () => {
    const c = cluster();
    c.addPolicy("b", lobbyPolicy);
    c.addPolicy("a");
    const gate = deferred();
    c.gates.set("198.18.0.9", gate.promise);
    const reconciler = c.reconciler();
    const count = countReconciles(reconciler);
    controller = new PolicyController(c.caches, reconciler, c.metrics, () => undefined, 1);
    controller.start(c.sources);
    for (let i = 0; i < 50 && !c.scrapes.includes("198.18.0.9"); i++) await turns(1);
    expect(count("a")).toBe(0);
    c.deletePolicy("a");
    await turns(3);
    gate.resolve();
    await window();
    expect(count("a")).toBe(0);
    expect(c.policy("a")).toBeUndefined();
  });

  it("a policy re-created under the same name after a deletion is reconciled again", async () => {
    const c = cluster();
    c.addPolicy("a");
    const reconciler = c.reconciler();
    const count = countReconciles(reconciler);
    controller = new PolicyController(c.caches, reconciler, c.metrics, () => undefined, 1);
    controller.start(c.sources);
    await turns(10);
    expect(c.policy("a")?.metadata.finalizers).toEqual([CLEANUP_FINALIZER]);
    c.deletePolicy("a");
    await turns(20);
    expect(c.policy("a")).toBeUndefined();
    const before = count("a");
    const again = c.addPolicy("a");
    c.sources.policies.emit("add", again);
    await turns(10);
    // Reconciled again (its first run adds the finalizer, whose update event runs it once more).
    expect(count("a")).toBeGreaterThan(before);
    expect(c.policy("a")?.metadata.finalizers).toEqual([CLEANUP_FINALIZER]);
  });
});

/** Timers the test fires by hand; records every delay asked for. */
class ManualTimers {
  readonly delays: number[] = [];
  private pending = new Map<number, () => void>();
  private next = 1;
  readonly setTimer = (fn: () => void, ms: number): unknown => {
    this.delays.push(ms);
    this.pending.set(this.next, fn);
    return this.next++;
  };
  readonly clearTimer = (h: unknown): void => { this.pending.delete(h as number); };
  fireAll(): void {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const fn of fns) fn();
  }
}

describe("PolicyController: failed writes never stop the per-interval cycle", () => {
  it("a write refused for good (422) is retried at the policy's interval, not with backoff; budgets are pushed every time; logged once", async () => {
    const c = cluster();
    c.addPolicy("a", { limits: { maxConnections: 100 } });
    c.writer.patchPolicyStatus = async () => { throw Object.assign(new Error("ConnectionPolicy.connmeter.io \"a\" is invalid: status.topics[0].name: Too long"), { statusCode: 422 }); };
    const timers = new ManualTimers();
    const logs: string[] = [];
    controller = new PolicyController(c.caches, c.reconciler(), c.metrics, (l) => logs.push(l), 1, { setTimer: timers.setTimer, clearTimer: timers.clearTimer });
    controller.start(c.sources);
    for (let i = 0; i < 3; i++) {
      await turns(10);
      c.now += 5000;
      timers.fireAll();
    }
    await turns(10);
    // The finalizer's update event adds one immediate run; every retry after a failure waits the interval.
    expect(timers.delays.filter((ms) => ms !== 5000)).toEqual([]);
    expect(c.pushes.length).toBeGreaterThanOrEqual(6);
    // The reconciler reports a refused status write itself (log once, a counter, an Event) and goes on.
    expect(c.logs.filter((l) => l.includes("writing the status failed"))).toHaveLength(1);
    expect(await c.metrics.registry.metrics()).toMatch(/connmeter_operator_status_write_failures_total [1-9]/);
  });

  it("any other failure backs off no longer than the policy's interval", async () => {
    const c = cluster();
    c.addPolicy("a", { scrapeIntervalSeconds: 2 });
    c.writer.patchPolicyStatus = async () => { throw Object.assign(new Error("etcdserver: request timed out"), { statusCode: 500 }); };
    const timers = new ManualTimers();
    controller = new PolicyController(c.caches, c.reconciler(), c.metrics, () => undefined, 1, { setTimer: timers.setTimer, clearTimer: timers.clearTimer, baseBackoffMs: 500 });
    controller.start(c.sources);
    for (let i = 0; i < 5; i++) {
      await turns(10);
      c.now += 2000;
      timers.fireAll();
    }
    expect(Math.max(...timers.delays)).toBe(2000);
  });
});

describe("PolicyController: work-queue metrics", () => {
  it("exports depth, adds, queue and work durations, retries and running work under connmeter_workqueue_*, name=connectionpolicy", async () => {
    const c = cluster();
    c.addPolicy("a");
    controller = new PolicyController(c.caches, c.reconciler(), c.metrics, () => undefined, 1);
    controller.start(c.sources);
    await turns(10);
    const text = await c.metrics.registry.metrics();
    const label = 'name="connectionpolicy"';
    expect(text).toContain(`connmeter_workqueue_depth{${label}} 0`);
    expect(text).toMatch(new RegExp(`connmeter_workqueue_adds_total\\{${label}\\} [1-9]`));
    expect(text).toMatch(new RegExp(`connmeter_workqueue_queue_duration_seconds_count\\{${label}\\} [1-9]`));
    expect(text).toMatch(new RegExp(`connmeter_workqueue_work_duration_seconds_count\\{${label}\\} [1-9]`));
    expect(text).toContain(`connmeter_workqueue_unfinished_work_seconds{${label}} 0`);
    expect(text).toContain(`connmeter_workqueue_longest_running_processor_seconds{${label}} 0`);
    expect(text).toContain("# HELP connmeter_workqueue_retries_total");
  });
});
