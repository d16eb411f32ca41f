// The virtual topic connmeter:occupancy through the sidecar, with the official phoenix client
// and the Phoenix test app: the sidecar answers it itself (the app never sees it), from what
// the operator pushes. The operator's part is played by its own pure functions over the
// sidecar's real /stats, pushed with a real PUT /config.
import type { Channel } from "phoenix";
import WebSocket from "ws";
import { describe, expect, it } from "vitest";
import { aggregate } from "../../../operator/aggregate/aggregate.js";
import { occupancyPush, occupancySnapshot } from "../../../operator/aggregate/occupancy.js";
import type { OccupancyPolicy } from "../../../operator/api/types.js";
import { parseStats } from "../../../operator/scrape/sidecar-client.js";
import { join, joinReply, negotiatedExtensions } from "../../support/phoenix-client.js";
import { usePhoenixAppAndSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";

const TOKEN = "occupancy-test-token";
const POLICY: OccupancyPolicy = { expose: ["room:*", "lobby"], totals: true, intervalSeconds: 1 };

/** One operator interval for this sidecar alone: scrape /stats, aggregate, push the exposed part. */
async function operatorInterval(sidecar: SidecarHandle, policy: OccupancyPolicy = POLICY): Promise<void> {
  const sample = parseStats(await sidecar.stats(), "test");
  const observations = [{ name: "pod-a", node: "node-1", ready: true, sample, stale: false }];
  const snapshot = occupancySnapshot(policy, observations, aggregate(observations, []), new Date());
  const res = await fetch(`${sidecar.adminUrl}/config`, {
    method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ occupancy: occupancyPush(policy, snapshot), ttlSeconds: 60 }),
  });
  expect(res.status, await res.clone().text()).toBe(200);
}

type Reply = { status: string; response: Record<string, unknown> };

const joinOccupancy = (channel: Channel): Promise<Reply> => joinReply<Record<string, unknown>>(channel, 5_000);

/** The next `occupancy` push on `channel` that satisfies `check`. */
function nextPush(channel: Channel, check: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const ref = channel.on("occupancy", (m: Record<string, unknown>) => {
      if (!check(m)) return;
      channel.off("occupancy", ref);
      resolve(m);
    });
  });
}

describe("the virtual topic connmeter:occupancy", () => {
  const f = usePhoenixAppAndSidecar();

  it.each(["2.0.0", "1.0.0"] as const)("answers the join with the first snapshot and pushes updates as others join and leave (vsn %s); the app never sees it", async (vsn) => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const a = await f.client();
    expect(await join(a.channel("room:1"))).toBe("ok");
    expect(await join(a.channel("room:2"))).toBe("ok");
    await operatorInterval(sidecar); // tells the sidecar the globs
    await operatorInterval(sidecar); // the first counts

    const watcher = await f.client({ vsn });
    const occ = watcher.channel("connmeter:occupancy", { topics: ["room:1", "room:*", "lobby"] });
    const first = await joinOccupancy(occ);
    expect(first.status).toBe("ok");
    // Measured before the watcher connected: one connection.
    expect(first.response).toMatchObject({ total: { connections: 1, channels: 2 }, topics: { "room:1": 1, "room:*": 2, lobby: 0 } });
    expect(Date.parse(first.response.at as string)).toBeGreaterThan(Date.now() - 60_000);
    // Served by the sidecar: not a channel of the app, not in the ledger, shown apart.
    expect(f.app.count()).toBe(2);
    const stats = await sidecar.stats();
    expect(stats).toMatchObject({ channels: 2, occupancySubscribers: 1 });
    expect(Object.keys(stats.topics)).not.toContain("connmeter:occupancy");
    expect(await (await fetch(`${sidecar.adminUrl}/metrics`)).text()).toContain("connmeter_occupancy_subscribers 1");

    const b = await f.client();
    const joined = nextPush(occ, (m) => (m.topics as Record<string, number>)["room:1"] === 2);
    const room = b.channel("room:1");
    expect(await join(room)).toBe("ok");
    await operatorInterval(sidecar);
    expect(await joined).toMatchObject({ total: { connections: 3, channels: 3 }, topics: { "room:1": 2, "room:*": 3 } });

    const left = nextPush(occ, (m) => (m.topics as Record<string, number>)["room:1"] === 1);
    await new Promise((resolve) => room.leave().receive("ok", resolve));
    await waitFor(sidecar.stats, (st) => st.channels === 2, "the leave to be counted");
    await operatorInterval(sidecar);
    expect(await left).toMatchObject({ topics: { "room:1": 1, "room:*": 2 } });

    // The leave is answered by the sidecar at once (channel.js would otherwise wait 10 s).
    const t0 = Date.now();
    await new Promise((resolve) => occ.leave(5_000).receive("ok", resolve));
    expect(Date.now() - t0).toBeLessThan(4_000);
    await waitFor(sidecar.stats, (st) => st.occupancySubscribers === 0, "the subscriber to go");
    expect(f.app.count()).toBe(2);
  });

  it("pushes nothing when no value changed", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const watcher = await f.client();
    await operatorInterval(sidecar);
    await operatorInterval(sidecar);
    const occ = watcher.channel("connmeter:occupancy", { topics: ["lobby"] });
    const pushes: unknown[] = [];
    occ.on("occupancy", (m: unknown) => void pushes.push(m));
    expect((await joinOccupancy(occ)).status).toBe("ok");
    for (let i = 0; i < 3; i++) {
      await operatorInterval(sidecar); // new `at`, same counts
      await new Promise((r) => setTimeout(r, 400));
    }
    expect(pushes).toEqual([]);
  });

  it("refuses topics outside expose, too many topics, a disabled policy and join floods, each with its reason", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const s = await f.client();
    // Without spec.occupancy pushed the sidecar stays out of the way: the app refuses the topic itself.
    const refusedBeforePush = await joinOccupancy(s.channel("connmeter:occupancy", { topics: ["room:1"] }));
    expect(refusedBeforePush).toMatchObject({ status: "error", response: { reason: "unmatched topic" } });
    expect((await fetch(`${sidecar.adminUrl}/occupancy?topics=room:1`)).status).toBe(404);
    await operatorInterval(sidecar);
    expect(await joinOccupancy(s.channel("connmeter:occupancy", { topics: ["secret:1"] })))
      .toMatchObject({ status: "error", response: { reason: "not_exposed", topic: "secret:1" } });
    expect(await joinOccupancy(s.channel("connmeter:occupancy", { topics: Array.from({ length: 17 }, (_, i) => `room:${i}`) })))
      .toMatchObject({ status: "error", response: { reason: "too_many_topics" } });
    // Five joins in a burst per socket (two refused above count too), then one every 2 s.
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await joinOccupancy(s.channel("connmeter:occupancy", { topics: ["lobby"] })));
    expect(results.map((r) => r.status)).toEqual(["ok", "ok", "ok", "error"]);
    expect(results[3]!.response).toMatchObject({ reason: "rate_limited" });
    // None of it reached the app (it would have answered "unmatched topic" and logged each).
    expect(f.app.count()).toBe(0);
    const r = await fetch(`${sidecar.adminUrl}/occupancy?topics=secret:1`);
    expect(r.status).toBe(403);
    expect(await (await fetch(`${sidecar.adminUrl}/metrics`)).text()).toContain("connmeter_occupancy_joins_refused_total 3");
  });

  it("refuses a join whose message is over 4 KiB without reading it whole, and the app never sees it", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const s = await f.client();
    await operatorInterval(sidecar);
    const topics = Array.from({ length: 300 }, (_, i) => `room:${"x".repeat(20)}${i}`);
    expect(await joinOccupancy(s.channel("connmeter:occupancy", { topics })))
      .toMatchObject({ status: "error", response: { reason: "too_many_topics" } });
    expect(await joinOccupancy(s.channel("connmeter:occupancy", { topics: ["room:1"] }))).toMatchObject({ status: "ok" });
    expect(f.app.count()).toBe(0);
  });

  it("answers a raw vsn 1 client with its refs as sent, and GET /occupancy with the same counts", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const a = await f.client();
    expect(await join(a.channel("room:7"))).toBe("ok");
    await operatorInterval(sidecar);
    await operatorInterval(sidecar);
    const ws = new WebSocket(`${sidecar.url.replace("http", "ws")}/socket/websocket?vsn=1.0.0`);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const reply = new Promise<Record<string, unknown>>((resolve) => ws.once("message", (d: Buffer) => resolve(JSON.parse(d.toString("utf8")) as Record<string, unknown>)));
    ws.send(JSON.stringify({ topic: "connmeter:occupancy", event: "phx_join", payload: { topics: ["room:7"], nodes: true }, ref: 7, join_ref: 7 }));
    const msg = await reply;
    expect(msg).toMatchObject({ event: "phx_reply", ref: 7, topic: "connmeter:occupancy", payload: { status: "ok", response: { topics: { "room:7": 1 }, total: { connections: 1, channels: 1 } } } });
    expect((msg.payload as { response: { nodes: unknown } }).response.nodes).toEqual({ "node-1": { connections: 1, channels: 1, topics: {} } });
    ws.close();

    const http = await fetch(`${sidecar.adminUrl}/occupancy?topics=room:7,room:*&nodes=true`);
    expect(http.status).toBe(200);
    expect(await http.json()).toMatchObject({ topics: { "room:7": 1, "room:*": 1 }, total: { connections: 1, channels: 1 }, nodes: { "node-1": { topics: { "room:*": 1 } } } });
    // No token needed, and nothing beyond expose.
    expect((await fetch(`${sidecar.adminUrl}/occupancy?topics=patterns:x`)).status).toBe(403);
  });

  it("cuts the virtual join out of a socket that was relaying before occupancy was enabled: the app never answers it", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    const ws = new WebSocket(`${sidecar.url.replace("http", "ws")}/socket/websocket?vsn=2.0.0`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const frames: unknown[] = [];
    ws.on("message", (d: Buffer) => frames.push(JSON.parse(d.toString("utf8"))));
    // Bytes relayed while nothing could be cut, then occupancy arrives mid-connection.
    ws.send(JSON.stringify(["1", "1", "room:5", "phx_join", {}]));
    await waitFor(() => frames.length, (n) => n === 1, "the app's join reply");
    await operatorInterval(sidecar);
    ws.send(JSON.stringify(["2", "2", "connmeter:occupancy", "phx_join", { topics: ["room:*"] }]));
    ws.send(JSON.stringify(["1", "3", "room:5", "echo", { n: 1 }]));
    await waitFor(() => frames.length, (n) => n >= 3, "the virtual reply and the echo");
    await new Promise((r) => setTimeout(r, 300)); // an "unmatched topic" from the app would come now
    expect(frames.slice(1)).toEqual([
      ["2", "2", "connmeter:occupancy", "phx_reply", { response: { topics: { "room:*": 0 }, total: { connections: 1, channels: 1 }, at: expect.any(String) }, status: "ok" }],
      ["1", "3", "room:5", "phx_reply", { response: { n: 1 }, status: "ok" }],
    ]);
    ws.close();
  });

  it("serves a compressed socket with uncompressed pushes; the client's inflate context stays intact", async () => {
    const sidecar = await f.startSidecar({ adminToken: TOKEN });
    await operatorInterval(sidecar);
    await operatorInterval(sidecar);
    const watcher = await f.client({ path: "/socketz", compress: true });
    expect(negotiatedExtensions(watcher)).toContain("permessage-deflate");
    expect(negotiatedExtensions(watcher)).toContain("client_no_context_takeover");
    const occ = watcher.channel("connmeter:occupancy", { topics: ["room:*"] });
    expect(await joinOccupancy(occ)).toMatchObject({ status: "ok", response: { topics: { "room:*": 0 } } });
    const pushed = nextPush(occ, (m) => (m.topics as Record<string, number>)["room:*"] === 1);
    const other = await f.client();
    expect(await join(other.channel("room:9"))).toBe("ok");
    await operatorInterval(sidecar);
    await pushed;
    // Compressed app traffic after the injected frames still inflates: the context is whole.
    for (let i = 0; i < 3; i++) expect(await join(watcher.channel(`room:z${i}`))).toBe("ok");
    expect(f.app.count()).toBe(4);
  });
});
