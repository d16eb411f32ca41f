import type { Socket } from "phoenix";
import { describe, expect, it } from "vitest";
import { negotiatedExtensions } from "../../support/phoenix-client.js";
import { usePhoenixAppAndSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";
import { sleep } from "../../support/wait.js";

const rateLimited = (rs: { status: string; response: unknown }[]) => rs.filter((r) => r.status === "error" && JSON.stringify(r.response) === '{"reason":"rate_limited"}').length;

async function metrics(sidecar: SidecarHandle): Promise<string> {
  await sleep(1100); // past the /metrics render cache
  return (await fetch(`${sidecar.adminUrl}/metrics`)).text();
}

/** Joins and resolves with the status and the response the client got. */
function joinResult(socket: Socket, topic: string): Promise<{ status: string; response: unknown }> {
  return new Promise((resolve, reject) => {
    socket
      .channel(topic)
      .join(10_000)
      .receive("ok", (response: unknown) => resolve({ status: "ok", response }))
      .receive("error", (response: unknown) => resolve({ status: "error", response }))
      .receive("timeout", () => reject(new Error(`join ${topic} timed out`)));
  });
}

describe.each(["2.0.0", "1.0.0"] as const)("joins the sidecar refuses: over a topic group's budget, or past a join rate (vsn %s)", (vsn) => {
  const f = usePhoenixAppAndSidecar();
  // The sidecar's clock for the join-rate tests: buckets refill only when the test says so.
  let t = 1_000_000;
  const now = () => t;

  it("are refused exactly at maxChannels with a capacity error written by the sidecar; the app never sees them", async () => {
    const sidecar = await f.startSidecar({ topics: [{ match: "room:*", maxChannels: 5 }] });
    const sockets: Socket[] = [];
    for (let i = 0; i < 4; i++) sockets.push(await f.client({ vsn }));
    // 8 joins over 4 sockets, all in flight at once: pending joins count against the budget.
    const results = await Promise.all(sockets.flatMap((s, i) => [joinResult(s, `room:${i}a`), joinResult(s, `room:${i}b`)]));
    expect(results.filter((r) => r.status === "ok")).toHaveLength(5);
    const refused = results.filter((r) => r.status === "error");
    expect(refused).toHaveLength(3);
    expect(refused.every((r) => JSON.stringify(r.response) === '{"reason":"capacity"}')).toBe(true);
    expect(f.app.count()).toBe(5);
    expect(await sidecar.stats()).toMatchObject({ channels: 5, topics: { "room:*": 5 } });
    // Joins outside the group and other messages still flow on the same sockets.
    expect((await joinResult(sockets[0]!, "patterns:free")).status).toBe("ok");
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain('connmeter_channel_joins_total{result="refused"} 3');
  });

  it("admit a join again once a channel of the group ends", async () => {
    const sidecar = await f.startSidecar({ topics: [{ match: "room:*", maxChannels: 1 }] });
    const s = await f.client({ vsn });
    const first = s.channel("room:1");
    await new Promise((resolve) => first.join().receive("ok", resolve));
    expect((await joinResult(s, "room:2")).status).toBe("error");
    first.leave();
    await waitFor(sidecar.stats, (st) => st.channels === 0, "the leave");
    expect((await joinResult(s, "room:3")).status).toBe("ok");
    expect(f.app.countByTopic()).toEqual({ "room:3": 1 });
  });

  // --- join floods (issue 18) ---
  it("refuses one socket's joins past --join-burst with rate_limited; the socket stays open and others are unaffected", async () => {
    const sidecar = await f.startSidecar({ limits: { joinRatePerSecond: 1, joinBurst: 5 }, now });
    const flooder = await f.client({ vsn });
    const other = await f.client({ vsn });
    const flood = await Promise.all(Array.from({ length: 20 }, (_, i) => joinResult(flooder, `room:f${i}`)));
    expect(flood.filter((r) => r.status === "ok")).toHaveLength(5);
    expect(rateLimited(flood)).toBe(15);
    expect(f.app.count()).toBe(5); // the app never saw the refused joins
    const calm = await Promise.all(Array.from({ length: 5 }, (_, i) => joinResult(other, `room:o${i}`)));
    expect(calm.every((r) => r.status === "ok")).toBe(true);
    // still open: after a token comes back, the flooder joins again
    t += 1000;
    expect((await joinResult(flooder, "room:later")).status).toBe("ok");
    expect(rateLimited([await joinResult(flooder, "room:too-soon")])).toBe(1);
    expect(await sidecar.stats()).toMatchObject({ connections: 2, channels: 11 });
    const page = await metrics(sidecar);
    expect(page).toContain('connmeter_joins_rate_limited_total{scope="socket"} 16');
    expect(page).toContain('connmeter_channel_joins_total{result="refused"} 16');
  });

  it("caps the pod's joins over all sockets with limits pushed by PUT /config", async () => {
    const sidecar = await f.startSidecar({ adminToken: "t", now });
    const put = await fetch(`${sidecar.adminUrl}/config`, {
      method: "PUT", headers: { authorization: "Bearer t" }, body: JSON.stringify({ podJoinRatePerSecond: 1, podJoinBurst: 6, ttlSeconds: 60 }),
    });
    expect(put.status).toBe(200);
    const a = await f.client({ vsn });
    const b = await f.client({ vsn });
    const results = await Promise.all([a, b].flatMap((s, k) => Array.from({ length: 5 }, (_, i) => joinResult(s, `room:${k}-${i}`))));
    expect(results.filter((r) => r.status === "ok")).toHaveLength(6);
    expect(rateLimited(results)).toBe(4);
    expect(await metrics(sidecar)).toContain('connmeter_joins_rate_limited_total{scope="pod"} 4');
  });
  // --- end join floods ---
});

describe("joins over budget on compressed sockets", () => {
  const f = usePhoenixAppAndSidecar();

  it("are refused too: the sidecar asks the app for client_no_context_takeover so each client message can be cut alone", async () => {
    const sidecar = await f.startSidecar({ topics: [{ match: "room:*", maxChannels: 2 }] });
    const s = await f.client({ compress: true, path: "/socketz" });
    expect(negotiatedExtensions(s)).toContain("client_no_context_takeover");
    const results = await Promise.all(["room:1", "room:2", "room:3", "patterns:x"].map((t) => joinResult(s, t)));
    expect(results.map((r) => r.status)).toEqual(["ok", "ok", "error", "ok"]);
    expect(f.app.count()).toBe(3);
    expect(await sidecar.stats()).toMatchObject({ channels: 3, unparsedMessages: 0 });
  });
});
