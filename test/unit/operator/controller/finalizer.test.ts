// connmeter's finalizer (connmeter.io/cleanup): added before the operator acts, with the
// policy's resourceVersion as a precondition; on deletion, cleanup (budgets lifted, deletion
// costs removed) then removal of that finalizer only; bounded when sidecars are unreachable or
// the target is gone.
import { describe, expect, it } from "vitest";
import { CLEANUP_FINALIZER, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION } from "../../../../operator/api/types.js";
import { CLEANUP_RETRY_MS, MAX_CLEANUP_ATTEMPTS } from "../../../../operator/controller/finalizer.js";
import { SidecarError } from "../../../../operator/scrape/sidecar-client.js";
import { FakeApiError, FakeCluster, NS, OTHER_FINALIZER, T0, pod, sample } from "./fake-cluster.js";

const KEY = `${NS}/chat-policy`;

/** Deployment chat (pods .1, .2 answering) and policy chat-policy with a cluster cap. */
function world(meta: Parameters<FakeCluster["addPolicy"]>[2] = {}, opts: { target?: boolean } = {}) {
  const c = new FakeCluster();
  if (opts.target !== false) c.addDeployment("chat", 2);
  c.caches.pods.items.push(pod("chat-a", "198.18.0.1"), pod("chat-b", "198.18.0.2"));
  c.answers.set("198.18.0.1", sample(3));
  c.answers.set("198.18.0.2", sample(4));
  c.addPolicy("chat-policy", { limits: { maxConnections: 50 } }, meta);
  const reconciler = c.reconciler();
  return { c, reconciler, reconcile: () => reconciler.reconcile(KEY) };
}

const deleting = (finalizers: string[]) => ({ finalizers, deletionTimestamp: new Date(T0).toISOString() });

describe("connmeter's finalizer: added with a precondition", () => {
  it("is added before the operator acts, after the finalizers already there, at the resourceVersion it read", async () => {
    const { c, reconcile } = world({ finalizers: [OTHER_FINALIZER] });
    const rv = c.policy("chat-policy")!.metadata.resourceVersion!;
    await reconcile();
    expect(c.writes[0]).toEqual({ op: "finalizers", name: "chat-policy", finalizers: [OTHER_FINALIZER, CLEANUP_FINALIZER], resourceVersion: rv, outcome: "ok" });
    expect(c.policy("chat-policy")!.metadata.finalizers).toEqual([OTHER_FINALIZER, CLEANUP_FINALIZER]);
    await reconcile();
    expect(c.ops("finalizers")).toHaveLength(1);
  });

  it("a 409 (another tool changed the policy meanwhile) drops nothing and does not stop metering; the next reconcile adds it", async () => {
    const { c, reconcile } = world();
    const patch = c.writer.patchPolicyFinalizers;
    c.writer.patchPolicyFinalizers = async () => { throw new FakeApiError(409, "the object has been modified"); };
    await reconcile();
    expect(c.pushes).toHaveLength(2);
    expect(c.ops("status")).toHaveLength(1);
    expect(c.events).toEqual([]);
    c.writer.patchPolicyFinalizers = patch;
    await reconcile();
    expect(c.policy("chat-policy")!.metadata.finalizers).toEqual([CLEANUP_FINALIZER]);
  });

  it("a 403 (RBAC without patch on connectionpolicies): one FinalizerFailed event naming the fix, and metering goes on", async () => {
    const { c, reconcile } = world();
    c.writer.patchPolicyFinalizers = async () => { throw new FakeApiError(403, 'cannot patch resource "connectionpolicies"'); };
    for (let i = 0; i < 3; i++) {
      await reconcile();
      c.now += 5000;
    }
    const failed = c.events.filter((e) => e.reason === "FinalizerFailed");
    expect(failed).toHaveLength(1);
    expect(failed[0]!.note).toContain("Grant the operator patch on connectionpolicies");
    expect(c.pushes).toHaveLength(6);
  });
});

describe("connmeter's finalizer: cleanup on deletion", () => {
  it("a policy deleted while no operator ran: budgets of the target's pods lifted, its deletion costs removed (not others'), only its finalizer removed, not requeued", async () => {
    const { c, reconcile } = world(deleting([OTHER_FINALIZER, CLEANUP_FINALIZER]));
    c.caches.pods.items[0]!.metadata!.annotations = { [DELETION_COST_ANNOTATION]: "3", [DELETION_COST_OWNER_ANNOTATION]: "chat-policy" };
    c.caches.pods.items[1]!.metadata!.annotations = { [DELETION_COST_ANNOTATION]: "9", [DELETION_COST_OWNER_ANNOTATION]: "other-policy" };
    const rv = c.policy("chat-policy")!.metadata.resourceVersion!;
    const result = await reconcile();
    expect(result.requeueAfterMs).toBeUndefined();
    expect(c.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(c.ops("annotate")).toEqual([{ op: "annotate", pod: "chat-a", annotations: { [DELETION_COST_ANNOTATION]: null, [DELETION_COST_OWNER_ANNOTATION]: null } }]);
    expect(c.ops("finalizers")).toEqual([{ op: "finalizers", name: "chat-policy", finalizers: [OTHER_FINALIZER], resourceVersion: rv, outcome: "ok" }]);
    expect(c.ops("status")).toEqual([]);
    expect(c.scrapes).toEqual([]);
    // Held by the other tool's finalizer now: a reconcile does nothing more and asks for no requeue.
    const writes = c.writes.length;
    expect((await reconcile()).requeueAfterMs).toBeUndefined();
    expect(c.writes).toHaveLength(writes);
  });

  it("unreachable sidecars: cleanup tried a bounded number of times, then given up with a CleanupIncomplete event, and the finalizer removed", async () => {
    const { c, reconcile } = world(deleting([CLEANUP_FINALIZER]));
    c.resetErrors.set("198.18.0.1", new SidecarError("timeout", "no answer within 2000 ms"));
    const delays: (number | undefined)[] = [];
    for (let i = 0; i < MAX_CLEANUP_ATTEMPTS; i++) delays.push((await reconcile()).requeueAfterMs);
    expect(delays).toEqual([CLEANUP_RETRY_MS, 2 * CLEANUP_RETRY_MS, undefined]);
    expect(c.resets.filter((ip) => ip === "198.18.0.1")).toHaveLength(MAX_CLEANUP_ATTEMPTS);
    const gaveUp = c.events.filter((e) => e.reason === "CleanupIncomplete");
    expect(gaveUp).toHaveLength(1);
    expect(gaveUp[0]).toMatchObject({ type: "Warning" });
    expect(gaveUp[0]!.note).toContain("chat-a");
    expect(gaveUp[0]!.note).not.toContain("chat-b");
    expect(c.ops("finalizers").map((w) => w.finalizers)).toEqual([[]]);
    expect(c.policy("chat-policy")).toBeUndefined();
  });

  it("a target that is gone holds nothing: the finalizer is removed at once", async () => {
    const { c, reconcile } = world(deleting([CLEANUP_FINALIZER]), { target: false });
    expect((await reconcile()).requeueAfterMs).toBeUndefined();
    expect(c.resets).toEqual([]);
    expect(c.ops("finalizers").map((w) => w.finalizers)).toEqual([[]]);
    expect(c.policy("chat-policy")).toBeUndefined();
  });

  it("lifts the budgets of pods it pushed to that the target no longer selects", async () => {
    const { c, reconciler, reconcile } = world();
    await reconcile();
    expect(c.pushes.map((p) => p.ip).sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    c.caches.pods.items[1]!.metadata!.labels = { app: "moved" };
    c.deletePolicy("chat-policy");
    await reconciler.reconcile(KEY);
    expect(c.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(c.policy("chat-policy")).toBeUndefined();
  });
});
