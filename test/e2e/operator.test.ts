// The operator against the local cluster, end to end: real pods running the demo app with the
// connmeter sidecar, the official phoenix client through each pod's sidecar, the operator as a
// process (`node dist/operator/main.js`), and what users look at: `kubectl get connpol`, the
// policy's status, the Deployment's replicas, Events and the sidecars' own /stats and /config.
import type { V1Pod } from "@kubernetes/client-node";
import type { Channel, Socket } from "phoenix";
import WebSocket from "ws";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { restartApiserver } from "../env/cluster.js";
import {
  applyYaml, createNamespace, describeNamespace, freezeContainer, kube, listPods, requireBuilt, waitFor, waitForPodsReady, waitForReplicas,
} from "../env/e2e-helpers.js";
import { onLocalCluster } from "../env/e2e-cluster.js";
import { meteredAppDeployment } from "../env/manifests.js";
import { connpolRow } from "../env/helm.js";
import { startOperator, stopOperators } from "../env/operator-process.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";

const TOKEN = "e2e-admin-token";
const INTERVAL_S = 2;

/** The demo app with the sidecar (test/env/manifests.ts), its admin token set for the operator's pushes. */
function deployment(replicas: number): string {
  return meteredAppDeployment({ name: "chat", replicas, sidecarEnv: { CONNMETER_ADMIN_TOKEN: TOKEN, CONNMETER_DRAIN_SECONDS: "2" } });
}

function policy(spec: string, intervalS = INTERVAL_S): string {
  return `
apiVersion: connmeter.io/v1alpha1
kind: ConnectionPolicy
metadata: {name: chat}
spec:
  targetRef: {kind: Deployment, name: chat}
  scrapeIntervalSeconds: ${intervalS}
${spec}`;
}

interface Status {
  connections?: number;
  channels?: number;
  replicas?: number;
  desiredReplicas?: number;
  meteredPods?: number;
  stalePods?: number;
  lastScaleTime?: string;
  topics?: { name: string; channels: number; maxChannels?: number }[];
  pods?: { name: string; node?: string; connections?: number; channels?: number; ready: boolean; stale?: boolean }[];
  nodes?: { name: string; pods: number; connections: number; channels: number }[];
  capacity?: { maxConnections: number; connections: number; usedPercent: number };
  conditions?: { type: string; status: string; reason: string; message: string; lastTransitionTime: string }[];
}

async function status(ns: string): Promise<Status> {
  const p = (await kube().custom.getNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies", name: "chat" })) as { status?: Status };
  return p.status ?? {};
}

const condition = (s: Status, type: string) => s.conditions?.find((c) => c.type === type);


async function sidecarJson(pod: V1Pod, path: string): Promise<Record<string, unknown>> {
  // The sidecars carry TOKEN, so they require it for GET /stats and GET /config too.
  const res = await fetch(`http://${pod.status!.podIP}:9090${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await res.json()) as Record<string, unknown>;
}

const podName = (p: V1Pod) => p.metadata!.name!;
const url = (p: V1Pod) => `http://${p.status!.podIP}:4001`;

/** Every socket a test opened, closed after it. */
const sockets: Socket[] = [];

async function connect(pod: V1Pod, topics: string[] = []): Promise<{ socket: Socket; channels: Channel[] }> {
  const socket = phoenixSocket(url(pod));
  sockets.push(socket);
  await connected(socket);
  const channels: Channel[] = [];
  for (const t of topics) {
    const ch = socket.channel(t, {});
    const reply = await joinWithReply(ch);
    if (reply.status !== "ok") throw new Error(`join ${t} on ${podName(pod)}: ${JSON.stringify(reply)}`);
    channels.push(ch);
  }
  return { socket, channels };
}

function joinWithReply(ch: Channel): Promise<{ status: string; response: unknown }> {
  return new Promise((resolve, reject) => {
    ch.join(10_000)
      .receive("ok", (r: unknown) => resolve({ status: "ok", response: r }))
      .receive("error", (r: unknown) => resolve({ status: "error", response: r }))
      .receive("timeout", () => reject(new Error(`join ${ch.topic} timed out`)));
  });
}

/** A raw WebSocket upgrade through a pod's sidecar: 101 (kept open) or the refusal's status. */
function tryUpgrade(pod: V1Pod): Promise<{ status: number; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${pod.status!.podIP}:4001/socket/websocket?vsn=2.0.0`, { perMessageDeflate: false });
    ws.once("open", () => resolve({ status: 101, ws }));
    ws.once("unexpected-response", (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once("error", () => resolve({ status: 0 }));
  });
}

async function events(ns: string): Promise<{ reason: string; note: string; count: number }[]> {
  const { EventsV1Api } = await import("@kubernetes/client-node");
  const list = await kube().kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
  return list.items
    .filter((e) => e.regarding?.kind === "ConnectionPolicy")
    .map((e) => ({ reason: e.reason ?? "", note: e.note ?? "", count: e.series?.count ?? 1 }));
}

async function setup(prefix: string, replicas: number, policySpec: string, intervalS = INTERVAL_S): Promise<{ ns: string; pods: V1Pod[] }> {
  const ns = await createNamespace(prefix);
  await applyYaml(ns, deployment(replicas));
  const pods = await waitForPodsReady(ns, "app=chat", replicas, 90_000);
  await applyYaml(ns, policy(policySpec, intervalS));
  return { ns, pods };
}

const explain = (ns: string) => async () => `${await describeNamespace(ns)}\nstatus: ${JSON.stringify(await status(ns))}`;

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));

afterEach(async () => {
  for (const s of sockets.splice(0)) s.disconnect();
  await stopOperators();
});

describe("the connmeter operator", () => {
  it("shows the exact connections and channels in `kubectl get connpol` within 2 intervals, with per-topic, per-pod and per-node counts matching the sidecars", async () => {
    const { ns, pods } = await setup("op-meter", 3, `  topics: [{match: "room:lobby"}, {match: "room:*"}]`);
    const op = await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    const [a, b, c] = pods as [V1Pod, V1Pod, V1Pod];
    for (let i = 0; i < 3; i++) await connect(a, [`room:${i}`, "room:lobby"]);
    for (let i = 0; i < 2; i++) await connect(b, ["room:9", "patterns:news"]);
    await connect(c);
    const joinedAt = Date.now();
    // 6 sockets; channels: a 3×2, b 2×2 = 10; room:lobby 3 (the first group wins), room:* 5, patterns:news 2 (ungrouped).
    const row = await waitFor("kubectl get connpol to show 6 connections and 10 channels", async () => {
      const r = connpolRow(inject("kubeconfig"), ns);
      return r.CONNECTIONS === "6" && r.CHANNELS === "10" ? r : undefined;
    }, 2 * INTERVAL_S * 1000 + 1500, { explain: explain(ns) });
    console.log(`e2e: kubectl get connpol showed the counts ${Date.now() - joinedAt} ms after the last join (interval ${INTERVAL_S} s)`);
    expect(row).toMatchObject({ NAME: "chat", TARGET: "chat", READY: "True", REASON: "Metered", PODS: "3", REPLICAS: "3", DESIRED: "3" });
    expect(row.UPDATED).toMatch(/^\d+s$/);

    const s = await status(ns);
    expect(s.topics).toEqual([{ name: "room:lobby", channels: 3 }, { name: "room:*", channels: 5 }, { name: "patterns:news", channels: 2 }]);
    for (const p of pods) {
      const stats = await sidecarJson(p, "/stats");
      expect(s.pods).toContainEqual({ name: podName(p), node: p.spec!.nodeName, connections: stats.connections, channels: stats.channels, ready: true });
    }
    expect(s.pods!.map((p) => p.connections)).toEqual([3, 2, 1]); // busiest first
    const byNode = new Map<string, { pods: number; connections: number; channels: number }>();
    for (const p of s.pods!) {
      const n = byNode.get(p.node!) ?? { pods: 0, connections: 0, channels: 0 };
      byNode.set(p.node!, { pods: n.pods + 1, connections: n.connections + p.connections!, channels: n.channels + p.channels! });
    }
    expect(new Map(s.nodes!.map((n) => [n.name, { pods: n.pods, connections: n.connections, channels: n.channels }]))).toEqual(byNode);
    expect(condition(s, "Metered")).toMatchObject({ status: "True", reason: "AllPodsScraped" });
    expect(condition(s, "ScalingActive")).toMatchObject({ status: "False", reason: "ObserveOnly" });
    // the operator's own gauges carry the cluster totals
    const metrics = await op.metrics();
    expect(metrics).toMatch(new RegExp(`connmeter_policy_connections\\{namespace="${ns}",policy="chat"\\} 6`));
    expect(metrics).toMatch(new RegExp(`connmeter_policy_channels\\{namespace="${ns}",policy="chat",topic="room:\\*"\\} 5`));
  });

  it("scales the Deployment up on connections, then down once the window passes, keeping the pods that carry connections and their clients", async () => {
    const { ns, pods } = await setup("op-scale", 1, `  scaling: {minReplicas: 1, maxReplicas: 3, targetConnectionsPerPod: 4, scaleDownStabilizationSeconds: 6}`);
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    const first = pods[0]!;
    const clients = [];
    let crossedAt = 0;
    for (let i = 0; i < 10; i++) {
      clients.push(await connect(first, ["room:1"]));
      if (i === 8) crossedAt = Date.now(); // 9 connections: the first count that asks for 3 pods
    }
    await waitForReplicas(ns, "chat", 3, 60_000);
    const scaled = await waitFor("lastScaleTime", async () => (await status(ns)).lastScaleTime, 10_000);
    console.log(`e2e: scale patch ${Date.parse(scaled) - crossedAt} ms after the 9th connection asked for a 3rd pod (interval ${INTERVAL_S} s)`);
    expect(Date.parse(scaled) - crossedAt).toBeLessThanOrEqual(2 * INTERVAL_S * 1000 + 1000);
    const three = await waitForPodsReady(ns, "app=chat", 3, 90_000);
    const b = three.find((p) => podName(p) !== podName(first))!;

    // Leave 1 on the first pod, put 4 on b, none on c: 5 connections ask for 2 pods; c must go.
    for (const cl of clients.slice(1)) cl.socket.disconnect();
    const kept = [clients[0]!];
    for (let i = 0; i < 4; i++) kept.push(await connect(b, ["room:2"]));
    await waitForReplicas(ns, "chat", 2, 60_000);
    const left = (await listPods(ns, "app=chat")).filter((p) => !p.metadata?.deletionTimestamp).map(podName).sort();
    expect(left).toEqual([podName(first), podName(b)].sort());
    for (const k of kept) expect(k.socket.isConnected()).toBe(true);
    const annotated = new Map((await listPods(ns, "app=chat")).map((p) => [podName(p), p.metadata?.annotations?.["controller.kubernetes.io/pod-deletion-cost"]]));
    expect(annotated.get(podName(first))).toBe("1");
    expect(annotated.get(podName(b))).toBe("4");
    const reasons = (await events(ns)).map((e) => e.reason);
    expect(reasons).toContain("ScaledUp");
    expect(reasons).toContain("ScaledDown");
  });

  it("holds a cluster cap across 3 pods: accepted connections never exceed it, refusals are 503, a group cap refuses joins with the capacity reply, AtCapacity turns True", async () => {
    const { ns, pods } = await setup("op-cap", 3, `  topics: [{match: "room:*", maxChannels: 4}]
  limits: {maxConnections: 9}`);
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    await waitFor("every sidecar to hold a pushed budget", async () => {
      const configs = await Promise.all(pods.map((p) => sidecarJson(p, "/config")));
      return configs.every((c) => c.source === "pushed" && typeof c.connectionBudget === "number");
    }, 10 * INTERVAL_S * 1000, { explain: explain(ns) });
    const results: number[] = [];
    const openWs: WebSocket[] = [];
    for (let i = 0; i < 15; i++) {
      const r = await tryUpgrade(pods[i % 3]!);
      results.push(r.status);
      if (r.ws) openWs.push(r.ws);
    }
    try {
      const accepted = results.filter((s) => s === 101).length;
      expect(accepted).toBeLessThanOrEqual(9);
      expect(accepted).toBeGreaterThanOrEqual(6);
      expect(results.filter((s) => s !== 101).every((s) => s === 503)).toBe(true);
      // Over the next intervals the budgets follow the usage; the sum still never passes the cap.
      for (let round = 0; round < 2; round++) {
        await new Promise((r) => setTimeout(r, INTERVAL_S * 1000));
        for (const p of pods) {
          const r = await tryUpgrade(p);
          if (r.ws) openWs.push(r.ws);
        }
        const open = (await Promise.all(pods.map((p) => sidecarJson(p, "/stats")))).reduce((n, s) => n + (s.connections as number), 0);
        expect(open).toBeLessThanOrEqual(9);
      }
      const s = await waitFor("AtCapacity True", async () => {
        const st = await status(ns);
        return condition(st, "AtCapacity")?.status === "True" ? st : undefined;
      }, 4 * INTERVAL_S * 1000, { explain: explain(ns) });
      expect(s.capacity).toMatchObject({ maxConnections: 9 });
    } finally {
      for (const w of openWs) w.terminate();
    }
    // The group cap: 4 room:* channels cluster-wide; the 5th join gets the sidecar's capacity reply.
    await waitFor("connections to close", async () => (await status(ns)).connections === 0, 6 * INTERVAL_S * 1000);
    const sock = await connect(pods[0]!);
    const replies = [];
    for (let i = 0; i < 6; i++) replies.push(await joinWithReply(sock.socket.channel(`room:${i}`, {})));
    const ok = replies.filter((r) => r.status === "ok").length;
    expect(ok).toBeLessThanOrEqual(4);
    expect(ok).toBeGreaterThanOrEqual(1);
    for (const r of replies.filter((x) => x.status === "error")) expect(r.response).toEqual({ reason: "capacity" });
    expect((await events(ns)).map((e) => e.reason)).toContain("AtCapacity");
  });

  it("marks a pod whose sidecar stops answering as stale with its last counts, Metered False naming it, never zero", async () => {
    const { ns, pods } = await setup("op-stale", 2, "");
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    const [a, b] = pods as [V1Pod, V1Pod];
    for (let i = 0; i < 3; i++) await connect(a, ["room:1"]);
    await connect(b);
    await waitFor("4 connections in status", async () => (await status(ns)).connections === 4, 4 * INTERVAL_S * 1000, { explain: explain(ns) });
    // Frozen (SIGSTOP, or the cgroup freezer on kind): the sidecar keeps its sockets but
    // answers nothing, like a wedged or partitioned pod.
    freezeContainer(a, "sidecar", true);
    try {
      const s = await waitFor("Metered False with ScrapeFailed", async () => {
        const st = await status(ns);
        return condition(st, "Metered")?.reason === "ScrapeFailed" ? st : undefined;
      }, 4 * INTERVAL_S * 1000 + 3000, { explain: explain(ns) });
      expect(condition(s, "Metered")!.status).toBe("False");
      expect(condition(s, "Metered")!.message).toContain(podName(a));
      expect(s.connections).toBe(4);
      expect(s.stalePods).toBe(1);
      expect(s.pods![0]).toMatchObject({ name: podName(a), stale: true, connections: 3, channels: 3 });
      expect((await events(ns)).map((e) => e.reason)).toContain("ScrapeFailed");
      // Past 3 intervals the last counts are too old: the pod is listed without counts, not as 0.
      const later = await waitFor("the stale pod's counts to expire", async () => {
        const st = await status(ns);
        return st.pods?.[0]?.connections === undefined ? st : undefined;
      }, 6 * INTERVAL_S * 1000 + 3000);
      expect(later.pods![0]).toMatchObject({ name: podName(a), stale: true });
      expect(condition(later, "Metered")!.message).toMatch(/lower bound/);
    } finally {
      freezeContainer(a, "sidecar", false);
    }
    await waitFor("Metered True again", async () => condition(await status(ns), "Metered")?.status === "True", 4 * INTERVAL_S * 1000);
  });

  // Restarts the local cluster's kube-apiserver process: local cluster only.
  it.skipIf(!onLocalCluster())("resumes updating status within 2 intervals after kube-apiserver restarts", async () => {
    const { ns, pods } = await setup("op-restart", 1, "");
    const op = await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    await connect(pods[0]!);
    await waitFor("1 connection in status", async () => (await status(ns)).connections === 1, 4 * INTERVAL_S * 1000);
    await restartApiserver(3000, () => {});
    const backAt = Date.now();
    await connect(pods[0]!);
    await waitFor("2 connections in status after the restart", async () => (await status(ns)).connections === 2, 2 * INTERVAL_S * 1000 + 1500, {
      explain: async () => op.logs().slice(-2000),
    });
    console.log(`e2e: status updated ${Date.now() - backAt} ms after kube-apiserver was ready again`);
    expect(op.child.exitCode).toBe(null);
  });

  it("runs as two replicas with one leader; when the leader is killed the other takes over and no scale is applied twice", async () => {
    const { ns, pods } = await setup("op-ha", 1, `  scaling: {minReplicas: 1, maxReplicas: 3, targetConnectionsPerPod: 4}`);
    const kc = inject("kubeconfig");
    const ops = [
      await startOperator({ kubeconfig: kc, namespace: ns, token: TOKEN, leaderElect: true, name: "op-a" }),
      await startOperator({ kubeconfig: kc, namespace: ns, token: TOKEN, leaderElect: true, name: "op-b" }),
    ];
    const roles = async () => Promise.all(ops.map(async (o) => (o.child.exitCode === null ? (await o.readyz()).body.trim() : "dead")));
    const first = await waitFor("one leader and one standby", async () => {
      const r = await roles();
      return r.includes("leader") && r.includes("standby") ? r : undefined;
    }, 30_000);
    const leader = ops[first.indexOf("leader")]!;
    const standby = ops[first.indexOf("standby")]!;
    for (let i = 0; i < 6; i++) await connect(pods[0]!);
    await waitForReplicas(ns, "chat", 2, 30_000);
    await waitFor("ScaledUp recorded", async () => (await events(ns)).some((e) => e.reason === "ScaledUp"), 10_000);
    expect(await leader.metrics()).toMatch(/connmeter_operator_scale_actions_total\{direction="up"\} 1/);
    expect(await standby.metrics()).not.toMatch(/connmeter_operator_scale_actions_total\{direction="up"\} [1-9]/);

    await leader.stop("SIGKILL");
    const killedAt = Date.now();
    await waitFor("the standby to lead", async () => (await standby.readyz()).body.trim() === "leader", 30_000);
    console.log(`e2e: the standby took over ${Date.now() - killedAt} ms after the leader was killed (lease 15 s)`);
    // It keeps metering, and does not scale again: the target is where the connections want it.
    await connect(pods[0]!);
    await waitFor("the new leader to write status", async () => (await status(ns)).connections === 7, 4 * INTERVAL_S * 1000 + 2000);
    const d = await kube().apps.readNamespacedDeployment({ name: "chat", namespace: ns });
    expect(d.spec?.replicas).toBe(2);
    expect(await standby.metrics()).not.toMatch(/connmeter_operator_scale_actions_total\{direction="(up|down)"\} [1-9]/);
    const scaledUp = (await events(ns)).filter((e) => e.reason === "ScaledUp");
    expect(scaledUp.reduce((n, e) => n + e.count, 0)).toBe(1);
  });

  it("lifts every sidecar's budgets at once when the policy is deleted, not only when their TTL runs out", async () => {
    const { ns, pods } = await setup("op-delete", 2, `  limits: {maxConnections: 100, maxConnectionsPerPod: 60, rejectAtPercent: 80}`, 5);
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    await waitFor("budgets pushed to both sidecars", async () => {
      const configs = await Promise.all(pods.map((p) => sidecarJson(p, "/config")));
      return configs.every((c) => c.source === "pushed" && c.maxConnections === 60 && c.rejectAtPercent === 80 && c.connectionBudget === 50);
    }, 20_000, { explain: explain(ns) });
    await kube().custom.deleteNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies", name: "chat" });
    const deletedAt = Date.now();
    await waitFor("both sidecars back on their flags", async () => {
      const configs = await Promise.all(pods.map((p) => sidecarJson(p, "/config")));
      return configs.every((c) => c.source === "flags" && c.connectionBudget === null);
    }, 5_000);
    // The TTL outlasts two failovers (128 s at a 2 s interval): this was the delete, not the expiry.
    expect(Date.now() - deletedAt).toBeLessThan(15_000);
  });
});
