// spec.occupancy end to end (issue 17): two pods of the demo app with the sidecar, the
// operator as a process, the official phoenix client. A client on pod A, joined to the virtual
// topic connmeter:occupancy, sees the cluster-wide counts including pod B's clients within two
// intervals, per node when asked; GET /occupancy on pod A serves the same without a token.
import type { V1Pod } from "@kubernetes/client-node";
import type { Channel, Socket } from "phoenix";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { applyYaml, createNamespace, describeNamespace, kube, requireBuilt, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { connectionPolicy, meteredAppDeployment } from "../env/manifests.js";
import { apiMessage } from "../env/kube.js";
import { startOperator, stopOperators } from "../env/operator-process.js";
import { connected, join, joinReply, phoenixSocket } from "../support/phoenix-client.js";

const TOKEN = "e2e-occupancy-token";
const INTERVAL_S = 2;
const sockets: Socket[] = [];

interface Occupancy {
  total?: { connections: number; channels: number };
  topics: Record<string, number | null>;
  nodes?: Record<string, { connections?: number; channels?: number; topics: Record<string, number> }>;
  at: string | null;
}

async function client(pod: V1Pod): Promise<Socket> {
  const s = phoenixSocket(`http://${pod.status!.podIP}:4001`);
  sockets.push(s);
  await connected(s);
  return s;
}

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));

afterEach(async () => {
  for (const s of sockets.splice(0)) s.disconnect();
  await stopOperators();
});

describe("spec.occupancy", () => {
  it("gives a client on pod A the cluster-wide counts, pod B's clients included, within 2 intervals", async () => {
    const ns = await createNamespace("occ");
    await applyYaml(ns, meteredAppDeployment({ name: "chat", replicas: 2, spreadAcrossNodes: true, sidecarEnv: { CONNMETER_ADMIN_TOKEN: TOKEN } }));
    const [a, b] = (await waitForPodsReady(ns, "app=chat", 2, 90_000)) as [V1Pod, V1Pod];
    await applyYaml(ns, connectionPolicy({ name: "chat", scrapeIntervalSeconds: INTERVAL_S, spec: { occupancy: { expose: ["room:*"], totals: true } } }));
    await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
    const explain = async () => `${await describeNamespace(ns)}\nGET /occupancy of A: ${await (await fetch(`http://${a.status!.podIP}:9090/occupancy?topics=room:*`)).text()}`;

    // Until the operator's first push the sidecar stays out of the way (the app refuses the topic): retry.
    const watcher = await client(a);
    let occ: Channel | undefined;
    let first: Occupancy | undefined;
    await waitFor("the virtual topic to be served on pod A", async () => {
      const ch = watcher.channel("connmeter:occupancy", { topics: ["room:*"], nodes: true });
      const r = await joinReply(ch, 5_000);
      if (r.status !== "ok") {
        ch.leave();
        return false;
      }
      occ = ch;
      first = r.response as Occupancy;
      return true;
    }, 6 * INTERVAL_S * 1000, { intervalMs: 500, explain });
    expect(first).toMatchObject({ topics: { "room:*": expect.any(Number) } });

    const pushes: Occupancy[] = [];
    occ!.on("occupancy", (m: Occupancy) => void pushes.push(m));
    for (let i = 0; i < 3; i++) expect(await join((await client(b)).channel(`room:${i}`))).toBe("ok");
    const joinedAt = Date.now();
    const seen = await waitFor("pod A's subscriber to see pod B's 3 channels", async () => pushes.find((m) => m.topics["room:*"] === 3),
      2 * INTERVAL_S * 1000 + 1500, { intervalMs: 50, explain });
    console.log(`e2e: occupancy push on pod A showed pod B's joins ${Date.now() - joinedAt} ms after the last (interval ${INTERVAL_S} s)`);
    // 4 sockets: the watcher on A, 3 on B; the virtual channel is no channel.
    expect(seen.total).toEqual({ connections: 4, channels: 3 });
    expect(seen.nodes).toEqual({
      [a.spec!.nodeName!]: { connections: 1, channels: 0, topics: { "room:*": 0 } },
      [b.spec!.nodeName!]: { connections: 3, channels: 3, topics: { "room:*": 3 } },
    });
    expect(Date.parse(seen.at!)).toBeGreaterThan(joinedAt - INTERVAL_S * 1000);

    // The app's server side reads the same from its own sidecar, with no token.
    const http = await fetch(`http://${a.status!.podIP}:9090/occupancy?topics=room:*`);
    expect(http.status).toBe(200);
    expect(await http.json()).toMatchObject({ topics: { "room:*": 3 }, total: { connections: 4, channels: 3 } });
    expect((await fetch(`http://${a.status!.podIP}:9090/occupancy?topics=patterns:x`)).status).toBe(403);
  });

  it("is refused by the API server when it exposes nothing or repeats a glob", async () => {
    const ns = await createNamespace("occ-crd");
    const create = (occupancy: unknown) => kube().custom.createNamespacedCustomObject({
      group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies",
      body: { apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy", metadata: { generateName: "p-" }, spec: { targetRef: { kind: "Deployment", name: "chat" }, occupancy } },
    });
    const refusal = async (occupancy: unknown) => create(occupancy).then(() => "accepted", (err: unknown) => apiMessage(err));
    expect(await refusal({ totals: false })).toContain("spec.occupancy exposes nothing");
    expect(await refusal({ expose: ["room:*", "room:*"] })).toContain("must not list a glob twice");
    expect(await refusal({ expose: ["room:*"], intervalSeconds: 301 })).toContain("301");
    const ok = (await create({ expose: ["room:*"] })) as { spec: { occupancy: unknown } };
    expect(ok.spec.occupancy).toEqual({ expose: ["room:*"], totals: false });
  });
});
