// status.usage end to end (issue 18): the demo app with the sidecar, the official phoenix client,
// the operator as a process. The sidecar is killed mid-day (its counters restart at 0): the
// policy's connection-seconds keep growing from where they were, summed from increases.
import type { V1Pod } from "@kubernetes/client-node";
import type { Socket } from "phoenix";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { applyYaml, createNamespace, describeNamespace, killContainer, kube, listPods, requireBuilt, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { onLocalCluster } from "../env/e2e-cluster.js";
import { connectionPolicy, meteredAppDeployment } from "../env/manifests.js";
import { startOperator, stopOperators } from "../env/operator-process.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";
import type { UsageStatus } from "../../operator/api/types.js";

const TOKEN = "e2e-admin-token";

interface Status {
  connections?: number;
  usage?: UsageStatus;
}

async function status(ns: string): Promise<Status> {
  const p = (await kube().custom.getNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies", name: "chat" })) as { status?: Status };
  return p.status ?? {};
}

const sockets: Socket[] = [];

async function connectN(pod: V1Pod, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = phoenixSocket(`http://${pod.status!.podIP}:4001`);
    sockets.push(s);
    await connected(s);
    out.push(s);
  }
  return out;
}

async function sidecarUsage(pod: V1Pod): Promise<{ since: string; connectionSeconds: number }> {
  const res = await fetch(`http://${pod.status!.podIP}:9090/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return ((await res.json()) as { usage: { since: string; connectionSeconds: number } }).usage;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));

afterEach(async () => {
  for (const s of sockets.splice(0)) s.disconnect();
  await stopOperators();
});

describe("status.usage", () => {
  // Killing one container of a pod needs the local cluster's process view (kind: not run).
  it.skipIf(!onLocalCluster())("keeps summing connection-seconds across a sidecar restart (counter reset), never the raw counter", async () => {
    const ns = await createNamespace("usage");
    await applyYaml(ns, meteredAppDeployment({ name: "chat", replicas: 1, sidecarEnv: { CONNMETER_ADMIN_TOKEN: TOKEN } }));
    const [pod] = (await waitForPodsReady(ns, "app=chat", 1, 90_000)) as [V1Pod];
    await applyYaml(ns, connectionPolicy({ name: "chat", scrapeIntervalSeconds: 1 }));
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    const explain = async () => `${await describeNamespace(ns)}\nstatus: ${JSON.stringify(await status(ns))}`;
    await waitFor("status.usage", async () => (await status(ns)).usage, 30_000, { explain });

    // 4 connections for about 6 s; the status is written when the count changes (usage rides along)
    await connectN(pod, 4);
    await waitFor("4 connections in status", async () => (await status(ns)).connections === 4, 20_000, { explain });
    await sleep(6000);
    const before = await sidecarUsage(pod);
    killContainer(pod, "sidecar");
    for (const s of sockets.splice(0)) s.disconnect();
    await waitFor("the restarted sidecar", async () => {
      const [p] = await listPods(ns, "app=chat");
      try {
        const u = p ? await sidecarUsage(p) : undefined;
        return u && u.since !== before.since ? u : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, { explain });
    await waitFor("0 connections in status", async () => (await status(ns)).connections === 0, 30_000, { explain });
    const atRestart = (await status(ns)).usage!.connectionSeconds;
    // At least what the old sidecar counted up to the operator's first scrape of it (it began
    // as a baseline): the 6 s of 4 connections are in, minus at most the scrape before the kill.
    expect(atRestart).toBeGreaterThanOrEqual(4 * 6 - 4 * 2);

    await connectN(pod, 4);
    await waitFor("4 connections again", async () => (await status(ns)).connections === 4, 30_000, { explain });
    await sleep(5000);
    for (const s of sockets.splice(0, 2)) s.disconnect();
    await waitFor("2 connections in status", async () => (await status(ns)).connections === 2, 20_000, { explain });
    const after = (await status(ns)).usage!;
    const raw = (await sidecarUsage(pod)).connectionSeconds;
    console.log(`e2e usage: before the kill the sidecar counted ${before.connectionSeconds.toFixed(1)} s; status ${atRestart} s at the restart, ${after.connectionSeconds} s after 5 s of 4 more; the new sidecar's raw counter ${raw.toFixed(1)} s`);
    // the new sidecar's counter restarted at 0, the status did not
    expect(after.connectionSeconds).toBeGreaterThanOrEqual(atRestart + 4 * 5 - 4 * 2);
    expect(after.connectionSeconds).toBeGreaterThan(raw + 8);
    expect(after.period).toBe(new Date().toISOString().slice(0, 10));
    expect(after.peakConnections).toBeGreaterThanOrEqual(4);
  });
});
