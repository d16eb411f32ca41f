// Scaling writes like the HPA's: read the scale subresource, decide from its replicas, write
// back with its resourceVersion; on 409 Conflict read and decide again, a bounded number of
// times. The fake writer (fake-cluster.ts) answers 409 when the resourceVersion moved.
import { describe, expect, it } from "vitest";
import { FakeCluster, NS, pod, sample } from "./fake-cluster.js";

const KEY = `${NS}/chat-policy`;

/** Deployment chat at `replicas` with pods .1 and .2 answering `perPod` connections each, and a policy scaling it at 100 per pod. */
function scaling(replicas: number, perPod: number, over: Record<string, number> = {}) {
  const c = new FakeCluster();
  const deployment = c.addDeployment("chat", replicas);
  c.caches.pods.items.push(pod("chat-a", "198.18.0.1"), pod("chat-b", "198.18.0.2"));
  c.answers.set("198.18.0.1", sample(perPod));
  c.answers.set("198.18.0.2", sample(perPod));
  c.addPolicy("chat-policy", { scaling: { minReplicas: 1, maxReplicas: 30, targetConnectionsPerPod: 100, scaleDownStabilizationSeconds: 0, ...over } as never });
  const reconciler = c.reconciler();
  return { c, deployment, reconcile: () => reconciler.reconcile(KEY) };
}

const condition = (c: FakeCluster, type: string) => c.policy("chat-policy")?.status?.conditions?.find((x) => x.type === type);

describe("Reconciler: scale writes with a resourceVersion precondition", () => {
  it("reads the scale subresource and writes the decision back with the resourceVersion it read", async () => {
    const { c, deployment, reconcile } = scaling(2, 250);
    const rv = deployment.metadata!.resourceVersion!;
    await reconcile();
    expect(c.ops("getScale")).toHaveLength(1);
    expect(c.ops("scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 5, resourceVersion: rv, outcome: "ok" }]);
    expect(deployment.spec?.replicas).toBe(5);
  });

  it("a kubectl scale between read and write: 409, read again, decided again from the new replicas, one write per decision", async () => {
    // 2,000 connections want 20 pods; from 2 the HPA's default rate allows 6, from 10 it allows 20.
    const { c, deployment, reconcile } = scaling(2, 1000);
    const rvRead = deployment.metadata!.resourceVersion!;
    let rvAfterKubectl = "";
    c.afterGetScale = () => {
      c.afterGetScale = undefined;
      c.scaleTo(deployment, 10);
      rvAfterKubectl = deployment.metadata!.resourceVersion!;
    };
    await reconcile();
    expect(c.ops("getScale")).toHaveLength(2);
    expect(c.ops("scale")).toEqual([
      { op: "scale", kind: "Deployment", name: "chat", replicas: 6, resourceVersion: rvRead, outcome: "conflict" },
      { op: "scale", kind: "Deployment", name: "chat", replicas: 20, resourceVersion: rvAfterKubectl, outcome: "ok" },
    ]);
    expect(deployment.spec?.replicas).toBe(20);
    const scaled = c.events.filter((e) => e.reason === "ScaledUp");
    expect(scaled).toHaveLength(1);
    expect(scaled[0]!.note).toContain("from 10 to 20");
  });

  it("writes nothing when the fresh read shows the replicas already where the new decision wants them", async () => {
    const { c, deployment, reconcile } = scaling(2, 250);
    c.afterGetScale = () => {
      c.afterGetScale = undefined;
      c.scaleTo(deployment, 5);
    };
    await reconcile();
    expect(c.ops("scale").map((w) => w.outcome)).toEqual(["conflict"]);
    expect(deployment.spec?.replicas).toBe(5);
    expect(c.events.filter((e) => e.reason === "ScaledUp")).toEqual([]);
    expect(c.policy("chat-policy")?.status?.replicas).toBe(5);
  });

  it("gives up after 3 conflicts in one reconcile, says why in ScalingActive, and keeps the status following the counts", async () => {
    const { c, deployment, reconcile } = scaling(2, 250);
    c.afterGetScale = () => c.scaleTo(deployment, 2);
    await reconcile();
    expect(c.ops("scale").map((w) => w.outcome)).toEqual(["conflict", "conflict", "conflict"]);
    expect(condition(c, "ScalingActive")).toMatchObject({ status: "False", reason: "FailedUpdateScale" });
    expect(condition(c, "ScalingActive")?.message).toContain("409 Conflict");
    expect(c.policy("chat-policy")?.status?.connections).toBe(500);
  });

  it("does not read the scale subresource when the cached replicas already match the decision", async () => {
    const { c, reconcile } = scaling(2, 90);
    await reconcile();
    expect(c.ops("getScale")).toEqual([]);
    expect(c.ops("scale")).toEqual([]);
  });

  it("a target with 0 replicas on the fresh read is left alone (the HPA's ScalingDisabled)", async () => {
    const { c, deployment, reconcile } = scaling(2, 250);
    c.afterGetScale = () => {
      c.afterGetScale = undefined;
      c.scaleTo(deployment, 0);
    };
    await reconcile();
    // The first write was decided from 2 and refused; the fresh read says 0: nothing more is written.
    expect(c.ops("scale").map((w) => w.outcome)).toEqual(["conflict"]);
    expect(deployment.spec?.replicas).toBe(0);
  });
});
