// A Deployment of the demo app with the connmeter sidecar, on the local cluster: pods are real
// Kubernetes pods (scheduled by kube-scheduler, managed by the ReplicaSet controller) whose
// containers run as local processes in the pod's own network namespace.
import type { V1Pod } from "@kubernetes/client-node";
import { DiscoveryV1Api, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { connect } from "node:net";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  applyYaml, containerPids, createNamespace, deleteNamespace, kube, listPods, processExists, requireBuilt,
  waitFor, waitForPodGone, waitForPodsReady, waitForReplicas,
} from "../env/e2e-helpers.js";
import { meteredAppDeployment } from "../env/manifests.js";
import { onLocalCluster } from "../env/e2e-cluster.js";

const SELECTOR = "app=chat";

/** The manifest the issue describes (test/env/manifests.ts): demo app on 0.0.0.0:4000, sidecar on 4001 (admin 9090) with its default upstream 127.0.0.1:4000, one pod per node. */
const DEPLOYMENT = meteredAppDeployment({ name: "chat", replicas: 3, spreadAcrossNodes: true, terminationGracePeriodSeconds: 10 }) + `
---
apiVersion: v1
kind: Service
metadata:
  name: chat
spec:
  selector: {app: chat}
  ports: [{name: ws, port: 4001, targetPort: ws}]
`;

interface Stats {
  connections: number;
  channels: number;
  topics: Record<string, number>;
}

async function stats(podIP: string): Promise<Stats> {
  const res = await fetch(`http://${podIP}:9090/stats`);
  if (!res.ok) throw new Error(`GET http://${podIP}:9090/stats: ${res.status}`);
  return (await res.json()) as Stats;
}

/**
 * Whether nothing answers at host:port any more: refused, or (the pod's veth is gone, on both
 * clusters) host unreachable or no answer in 3 s.
 */
function unreachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once("connect", () => { s.destroy(); resolve(false); });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED" || err.code === "EHOSTUNREACH"));
    s.setTimeout(3000, () => { s.destroy(); resolve(true); });
  });
}

const ip = (pod: V1Pod) => pod.status?.podIP ?? "";
const name = (pod: V1Pod) => pod.metadata?.name ?? "";

let ns = "";
let pods: V1Pod[] = [];

beforeAll(async () => {
  requireBuilt("dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js");
  ns = await createNamespace("chat", { deleteAfterTest: false });
  await applyYaml(ns, DEPLOYMENT);
  pods = await waitForPodsReady(ns, SELECTOR, 3, 90_000);
  await waitForReplicas(ns, "chat", 3, 30_000);
});

afterAll(async () => {
  if (ns) await deleteNamespace(ns);
});

describe("a Deployment with the connmeter sidecar", () => {
  it("runs 3 Ready pods with distinct addresses spread over at least two nodes", () => {
    expect(pods).toHaveLength(3);
    const ips = pods.map(ip);
    expect(new Set(ips).size).toBe(3);
    for (const a of ips) expect(a).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(new Set(pods.map((p) => p.spec?.nodeName)).size).toBeGreaterThanOrEqual(2);
    for (const p of pods) {
      expect(p.status?.hostIP).toBeTruthy();
      expect(p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.restartCount]).sort()).toEqual([["app", true, 0], ["sidecar", true, 0]]);
      if (onLocalCluster()) expect(containerPids(p).size).toBe(2);
    }
  });

  it("publishes the Ready pods in the Service's EndpointSlice", async () => {
    const { kc } = kube();
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const want = pods.map(ip).sort();
    const slice = await waitFor("an EndpointSlice with the 3 pods", async () => {
      const list = await discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: "kubernetes.io/service-name=chat" });
      const eps = list.items.flatMap((s) => s.endpoints ?? []);
      const ready = eps.filter((e) => e.conditions?.ready).flatMap((e) => e.addresses).sort();
      return ready.length === 3 ? { eps, ready } : undefined;
    }, 30_000);
    expect(slice.ready).toEqual(want);
    expect(new Set(slice.eps.map((e) => e.nodeName))).toEqual(new Set(pods.map((p) => p.spec?.nodeName)));
  });


  it("meters a phoenix client joined to room:1 on the pod it connected to", async () => {
    const [target, ...others] = pods as [V1Pod, ...V1Pod[]];
    const socket = new Socket(`ws://${ip(target)}:4001/socket`, { transport: WebSocket, reconnectAfterMs: () => 60_000 });
    try {
      socket.connect();
      const channel = socket.channel("room:1", {});
      await new Promise<void>((resolve, reject) => {
        channel.join().receive("ok", () => resolve()).receive("error", (e: unknown) => reject(new Error(`join refused: ${JSON.stringify(e)}`)))
          .receive("timeout", () => reject(new Error("join timed out")));
      });
      const seen = await waitFor(`stats of ${name(target)} to show the join`, async () => {
        const s = await stats(ip(target));
        return s.connections === 1 && s.channels === 1 ? s : undefined;
      }, 10_000);
      expect(seen).toMatchObject({ connections: 1, channels: 1 });
      for (const p of others) expect(await stats(ip(p))).toMatchObject({ connections: 0, channels: 0 });
    } finally {
      socket.disconnect();
    }
    await waitFor("the sidecar to see the socket close", async () => (await stats(ip(target))).connections === 0, 10_000);
  });

  it("scales down by deleting the pod with the lowest pod-deletion-cost", async () => {
    const { core, apps } = kube();
    // The cheapest pod is neither the oldest nor the newest, so a default order cannot pass.
    const sorted = [...pods].sort((a, b) => name(a).localeCompare(name(b)));
    const costs = [100, -5, 50];
    for (const [i, p] of sorted.entries()) {
      await core.patchNamespacedPod(
        { name: name(p), namespace: ns, body: { metadata: { annotations: { "controller.kubernetes.io/pod-deletion-cost": String(costs[i]) } } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    }
    const cheapest = sorted[1] as V1Pod;
    const pids = [...containerPids(cheapest).values()];
    await apps.patchNamespacedDeploymentScale(
      { name: "chat", namespace: ns, body: { spec: { replicas: 2 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await waitForPodGone(ns, name(cheapest), 60_000);
    await waitForReplicas(ns, "chat", 2, 30_000);
    const left = (await listPods(ns, SELECTOR)).map(name).sort();
    expect(left).toEqual([name(sorted[0] as V1Pod), name(sorted[2] as V1Pod)].sort());
    for (const pid of pids) expect(processExists(pid), `pid ${pid} of ${name(cheapest)}`).toBe(false);
    pods = await listPods(ns, SELECTOR);
  });

  it("stops a deleted pod's processes and frees its address; the ReplicaSet replaces it", async () => {
    const victim = pods[0] as V1Pod;
    const pids = [...containerPids(victim).values()];
    expect(pids).toHaveLength(onLocalCluster() ? 2 : 0);
    for (const pid of pids) expect(processExists(pid)).toBe(true);
    expect(await unreachable(ip(victim), 4001)).toBe(false);

    await kube().core.deleteNamespacedPod({ name: name(victim), namespace: ns });
    await waitForPodGone(ns, name(victim), 30_000);
    for (const pid of pids) expect(processExists(pid), `pid ${pid} of ${name(victim)}`).toBe(false);
    expect(await unreachable(ip(victim), 4001)).toBe(true);
    expect(await unreachable(ip(victim), 9090)).toBe(true);

    const now = await waitForPodsReady(ns, SELECTOR, 2, 60_000);
    expect(now.map(name)).not.toContain(name(victim));
    expect(now.map(ip)).not.toContain(ip(victim));
  });
});
