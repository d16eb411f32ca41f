// Usage counters through a real sidecar with the official phoenix client: exact to the second of
// a clock the test moves, at connect, join, close and in between (open ones count up to the read).
import type { Socket } from "phoenix";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { connected, join, phoenixSocket } from "../../support/phoenix-client.js";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";
import { sleep } from "../../support/wait.js";

/** `name{labels} value` of one series in a Prometheus text page. */
function sample(page: string, series: string): number {
  const line = page.split("\n").find((l) => l.startsWith(series + " "));
  if (line === undefined) throw new Error(`no series ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

const AUTH = { authorization: "Bearer t0ken" };

describe("usage counters (connection- and channel-seconds)", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle;
  let t = Date.parse("2026-01-01T00:00:00Z");
  const metrics = async () => {
    await sleep(1100); // past the /metrics render cache
    return (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  };

  beforeAll(async () => {
    app = await startPhoenixServer();
    sidecar = await startSidecar({ upstream: app.url, topics: [{ match: "room:*" }], now: () => t, adminToken: "t0ken" });
  });
  afterAll(async () => {
    await sidecar?.close();
    await app?.close();
  });

  it("counts open sockets and channels up to the scrape, and closed ones up to their close", async () => {
    const a: Socket = phoenixSocket(sidecar.url);
    const b: Socket = phoenixSocket(sidecar.url);
    await connected(a);
    await connected(b);
    await waitFor(sidecar.stats, (s) => s.connections === 2, "two connections");
    expect(await join(a.channel("room:1"))).toBe("ok");
    expect(await join(b.channel("patterns:lobby"))).toBe("ok");
    await waitFor(sidecar.stats, (s) => s.channels === 2, "two channels");
    t += 60_000;
    let page = await metrics();
    expect(sample(page, 'connmeter_connection_seconds_total{transport="websocket"}')).toBe(120);
    expect(sample(page, 'connmeter_channel_seconds_total{group="room:*"}')).toBe(60);
    expect(sample(page, 'connmeter_channel_seconds_total{group="_other"}')).toBe(60);

    b.disconnect();
    await waitFor(sidecar.stats, (s) => s.connections === 1, "b to close");
    t += 30_000;
    page = await metrics();
    expect(sample(page, 'connmeter_connection_seconds_total{transport="websocket"}')).toBe(150);
    expect(sample(page, 'connmeter_channel_seconds_total{group="room:*"}')).toBe(90);
    expect(sample(page, 'connmeter_channel_seconds_total{group="_other"}')).toBe(60);
    expect(sample(page, 'connmeter_connection_seconds_total{transport="longpoll"}')).toBe(0);
    const stats = await sidecar.stats();
    expect(stats.usage).toEqual({ since: "2026-01-01T00:00:00.000Z", connectionSeconds: 150, channelSeconds: { "room:*": 90, _other: 60 } });
    // what the operator's spike detector reads: upgrades asked for and joins answered
    expect(stats.attempts).toEqual({ upgrades: 2, joins: 2, joinErrors: 0, disconnects: 1, leaves: 0 });
    a.disconnect();
  });

  it("labels its usage with the pushing policy (connmeter_policy_info) while the push holds, and refuses a bad name", async () => {
    const put = (body: unknown) => fetch(`${sidecar.adminUrl}/config`, { method: "PUT", body: JSON.stringify(body), headers: AUTH });
    const bad = await put({ policy: "Not A Name", ttlSeconds: 30 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/^policy must be/);
    expect(await metrics()).not.toContain("connmeter_policy_info{");
    expect((await put({ policy: "chat-policy", ttlSeconds: 30 })).status).toBe(200);
    expect(sample(await metrics(), 'connmeter_policy_info{policy="chat-policy"}')).toBe(1);
    await fetch(`${sidecar.adminUrl}/config`, { method: "DELETE", headers: AUTH });
    expect(await metrics()).not.toContain("connmeter_policy_info{");
  });
});
