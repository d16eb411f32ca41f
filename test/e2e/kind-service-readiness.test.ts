// Kind only (a real dataplane: kube-proxy, a NodePort Service on 127.0.0.1): a pod whose
// sidecar turned /readyz 503 at --reject-at-percent leaves the Service's endpoints, so new
// sockets through the Service go to the other pod while its own stay open; below the
// hysteresis (rejectAtPercent - 5 points) it is Ready again and takes new sockets.
import type { V1Pod } from "@kubernetes/client-node";
import { DiscoveryV1Api } from "@kubernetes/client-node";
import WebSocket from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { onKind } from "../env/e2e-cluster.js";
import { applyYaml, createNamespace, describeNamespace, isPodReady, kube, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { meteredAppDeployment } from "../env/manifests.js";

// 100 connections at most, /readyz 503 from 10 (10 %), Ready again below 5 % (<= 4).
const NODE_PORT = 30401; // mapped to 127.0.0.1:30401 by test/kind/cluster.sh
const MANIFEST = meteredAppDeployment({
  name: "ready", replicas: 2, sidecarArgs: ["--max-connections", "100", "--reject-at-percent", "10"], failureThreshold: 1, successThreshold: 1,
}) + `
---
apiVersion: v1
kind: Service
metadata:
  name: ready
spec:
  type: NodePort
  selector: {app: ready}
  ports: [{name: ws, port: 4001, targetPort: ws, nodePort: ${NODE_PORT}}]
`;

const ip = (p: V1Pod) => p.status?.podIP ?? "";
const sockets: WebSocket[] = [];

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/socket/websocket?vsn=2.0.0`, { perMessageDeflate: false });
    ws.once("open", () => { sockets.push(ws); resolve(ws); });
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`${url}: HTTP ${res.statusCode}`)));
  });
}
const viaService = () => open(`ws://127.0.0.1:${NODE_PORT}`);
async function close(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  await new Promise<void>((r) => { ws.once("close", () => r()); ws.close(); });
}
async function connections(p: V1Pod): Promise<number> {
  const res = await fetch(`http://${ip(p)}:9090/stats`);
  return ((await res.json()) as { connections: number }).connections;
}
async function readyz(p: V1Pod): Promise<number> {
  return (await fetch(`http://${ip(p)}:9090/readyz`)).status;
}
/** Whether the Service's EndpointSlice has `p` with ready = want. */
async function endpointReady(ns: string, p: V1Pod, want: boolean): Promise<boolean> {
  const list = await kube().kc.makeApiClient(DiscoveryV1Api).listNamespacedEndpointSlice({ namespace: ns, labelSelector: "kubernetes.io/service-name=ready" });
  const ep = list.items.flatMap((s) => s.endpoints ?? []).find((e) => e.addresses.includes(ip(p)));
  return ep !== undefined && (ep.conditions?.ready ?? false) === want;
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A previous run's namespace may still be terminating with the NodePort: its Service goes first. */
async function freeNodePort(): Promise<void> {
  const { core } = kube();
  await waitFor(`NodePort ${NODE_PORT} to be free`, async () => {
    const holders = (await core.listServiceForAllNamespaces()).items
      .filter((svc) => svc.spec?.ports?.some((p) => p.nodePort === NODE_PORT));
    for (const svc of holders) {
      const namespace = svc.metadata?.namespace ?? "";
      if (!namespace.startsWith("ready-")) throw new Error(`NodePort ${NODE_PORT} is held by Service ${namespace}/${svc.metadata?.name}`);
      await core.deleteNamespacedService({ name: svc.metadata?.name ?? "", namespace }).catch(() => undefined);
    }
    return holders.length === 0;
  }, 30_000);
}

afterEach(async () => {
  await Promise.all(sockets.splice(0).map(close));
});

describe.skipIf(!onKind())("readiness at --reject-at-percent through a Service (kind)", () => {
  it("sends no new sockets to a pod whose /readyz is 503 while the other takes them, and sends them again below the hysteresis", async () => {
    await freeNodePort();
    const ns = await createNamespace("ready");
    await applyYaml(ns, MANIFEST);
    const [a, b] = (await waitForPodsReady(ns, "app=ready", 2, 120_000)) as [V1Pod, V1Pod];
    const explain = async () => `${await describeNamespace(ns)}\nA ${ip(a)}: ${await connections(a).catch(String)} B ${ip(b)}: ${await connections(b).catch(String)}`;
    await waitFor("both pods in the Service's endpoints", async () => (await endpointReady(ns, a, true)) && (await endpointReady(ns, b, true)), 30_000, { explain });

    // 10 sockets straight to A: 10 % of 100, A's sidecar turns /readyz 503.
    const direct: WebSocket[] = [];
    for (let i = 0; i < 10; i++) direct.push(await open(`ws://${ip(a)}:4001`));
    await waitFor("A's /readyz to turn 503", async () => (await readyz(a)) === 503, 10_000, { explain });
    await waitFor("A to leave the Service's ready endpoints", async () => endpointReady(ns, a, false), 30_000, { explain });
    await sleep(2000); // kube-proxy applies the EndpointSlice on every node

    // New sockets through the Service all go to B; A keeps its 10.
    for (let i = 0; i < 6; i++) await viaService();
    await waitFor("B to hold the 6 sockets opened through the Service", async () => (await connections(b)) === 6, 10_000, { explain });
    expect(await connections(a)).toBe(10);

    // Hysteresis: 5 on A (5 %) is not below 10 - 5 points: still 503, still no new sockets.
    for (const ws of direct.splice(0, 5)) await close(ws);
    await waitFor("A to count 5", async () => (await connections(a)) === 5, 10_000, { explain });
    await sleep(3000); // several probe periods
    expect(await readyz(a)).toBe(503);
    expect(isPodReady((await kube().core.readNamespacedPod({ name: a.metadata!.name!, namespace: ns })))).toBe(false);
    for (let i = 0; i < 2; i++) await viaService();
    await waitFor("B to hold 8", async () => (await connections(b)) === 8, 10_000, { explain });
    expect(await connections(a)).toBe(5);

    // 4 on A (4 %) is below the hysteresis: Ready again, back in the endpoints.
    await close(direct.shift()!);
    await waitFor("A's /readyz to turn 200", async () => (await readyz(a)) === 200, 10_000, { explain });
    await waitFor("A back in the Service's ready endpoints", async () => endpointReady(ns, a, true), 30_000, { explain });
    await sleep(2000);

    // A takes new sockets again (B leaves the endpoints itself at 10, so this ends either way).
    const before = await connections(a);
    await waitFor("a socket through the Service to land on A", async () => {
      await viaService();
      return (await connections(a)) > before;
    }, 60_000, { intervalMs: 300, explain });
  });
});
