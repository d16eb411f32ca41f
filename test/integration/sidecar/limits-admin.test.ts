import type { Socket } from "phoenix";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { connected, join, phoenixSocket } from "../../support/phoenix-client.js";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";

const TOKEN = "test-token";

/** Attempts an upgrade with a raw client; resolves with the HTTP status and Retry-After. */
function tryUpgrade(url: string): Promise<{ status: number; retryAfter?: string; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url.replace(/^http/, "ws") + "/socket/websocket?vsn=2.0.0");
    ws.on("open", () => resolve({ status: 101, ws }));
    ws.on("unexpected-response", (_req, res) => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] }));
    ws.on("error", () => {});
  });
}

describe("limits and the admin port", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle;
  const open: (WebSocket | Socket)[] = [];

  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterEach(async () => {
    for (const s of open.splice(0)) {
      if (s instanceof WebSocket) s.terminate();
      else s.disconnect();
    }
    await sidecar?.close();
  });
  afterAll(async () => {
    await app?.close();
  });

  it("refuses upgrades exactly at --max-connections with 503 and Retry-After, before the app is touched", async () => {
    sidecar = await startSidecar({ upstream: app.url, limits: { maxConnections: 5 } });
    const attempts = await Promise.all(Array.from({ length: 8 }, () => tryUpgrade(sidecar.url)));
    for (const a of attempts) if (a.ws) open.push(a.ws);
    expect(attempts.filter((a) => a.status === 101)).toHaveLength(5);
    const refused = attempts.filter((a) => a.status !== 101);
    expect(refused.map((a) => a.status)).toEqual([503, 503, 503]);
    expect(refused.every((a) => Number(a.retryAfter) > 0)).toBe(true);
    expect(app.sockets()).toBe(5);
    // one leaves, one more fits
    (open.pop() as WebSocket).terminate();
    await waitFor(sidecar.stats, (s) => s.connections === 4, "a connection to close");
    const again = await tryUpgrade(sidecar.url);
    expect(again.status).toBe(101);
    open.push(again.ws!);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain('connmeter_connections_rejected_total{reason="capacity"} 3');
  });

  it("turns /readyz to 503 at --reject-at-percent and back with hysteresis while sockets stay", async () => {
    sidecar = await startSidecar({ upstream: app.url, limits: { maxConnections: 20, rejectAtPercent: 50 } });
    const readyz = async () => (await fetch(`${sidecar.adminUrl}/readyz`)).status;
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 9; i++) sockets.push((await tryUpgrade(sidecar.url)).ws!);
    open.push(...sockets);
    expect(await readyz()).toBe(200); // 45 %
    sockets.push((await tryUpgrade(sidecar.url)).ws!);
    open.push(sockets.at(-1)!);
    expect(await readyz()).toBe(503); // 50 %
    sockets.pop()!.terminate();
    await waitFor(sidecar.stats, (s) => s.connections === 9, "9 connections");
    expect(await readyz()).toBe(503); // 45 % is not below 50 - 5
    sockets.pop()!.terminate();
    await waitFor(sidecar.stats, (s) => s.connections === 8, "8 connections");
    expect(await readyz()).toBe(200); // 40 %
    expect(app.sockets()).toBe(8); // existing sockets were never touched
  });

  it("rate-limits upgrade floods with 429", async () => {
    sidecar = await startSidecar({ upstream: app.url, limits: { upgradeRatePerSecond: 1, upgradeBurst: 3 } });
    const attempts = await Promise.all(Array.from({ length: 6 }, () => tryUpgrade(sidecar.url)));
    for (const a of attempts) if (a.ws) open.push(a.ws);
    expect(attempts.map((a) => a.status).sort()).toEqual([101, 101, 101, 429, 429, 429]);
  });

  it("serves /stats, /metrics, /healthz and guards PUT /config with the bearer token", async () => {
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN });
    const s = phoenixSocket(sidecar.url);
    open.push(s);
    await connected(s);
    expect(await join(s.channel("room:1"))).toBe("ok");
    expect(await join(s.channel("denied:x"))).toBe("error");
    expect(await sidecar.stats()).toMatchObject({ connections: 1, channels: 1, longpoll: 0, topics: { "room:1": 1 } });
    expect((await fetch(`${sidecar.adminUrl}/healthz`)).status).toBe(200);

    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    for (const line of [
      'connmeter_connections{transport="websocket"} 1',
      'connmeter_channels{topic="room:1"} 1',
      'connmeter_channel_joins_total{result="ok"} 1',
      'connmeter_channel_joins_total{result="error"} 1',
      "connmeter_connections_accepted_total 1",
    ]) {
      expect(metrics).toContain(line);
    }
    expect(metrics).toMatch(/# HELP connmeter_connection_seconds_total .+/);
    expect(metrics).toMatch(/connmeter_process_resident_memory_bytes \d+/);

    const put = (body: unknown, token?: string) =>
      fetch(`${sidecar.adminUrl}/config`, {
        method: "PUT",
        body: JSON.stringify(body),
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
    expect((await put({ maxConnections: 1 })).status).toBe(401);
    expect((await put({ maxConnections: 1 }, "wrong")).status).toBe(401);
    const bad = await put({ rejectAtPercent: 500 }, TOKEN);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/rejectAtPercent/);
    const ok = await put({ maxConnections: 1, topics: [{ match: "room:*" }] }, TOKEN);
    expect(ok.status).toBe(200);
    // applied without a restart: the pod is now full, and topics are grouped
    expect((await tryUpgrade(sidecar.url)).status).toBe(503);
    expect((await sidecar.stats()).topics).toEqual({ "room:*": 1 });
  });

  it("falls back to the flags when a pushed config's ttlSeconds pass without a refresh, and says so in GET /config and the log", async () => {
    const log: string[] = [];
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN, limits: { maxConnections: 50 }, log: (m) => log.push(m) });
    const getConfig = async () => (await (await fetch(`${sidecar.adminUrl}/config`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as Record<string, unknown>;
    const put = (body: unknown) =>
      fetch(`${sidecar.adminUrl}/config`, { method: "PUT", body: JSON.stringify(body), headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await getConfig()).toEqual({
      maxConnections: 50,
      connectionBudget: null,
      rejectAtPercent: 90,
      upgradeRatePerSecond: 0,
      upgradeBurst: 100,
      joinRatePerSecond: 0,
      joinBurst: 20,
      podJoinRatePerSecond: 0,
      podJoinBurst: 200,
      topics: [],
      source: "flags",
      expiresAt: null,
      ttlSeconds: null,
      revision: expect.any(String),
    });
    const before = Date.now();
    const res = await put({ maxConnections: 1, topics: [{ match: "room:*", maxChannels: 5 }], ttlSeconds: 1 });
    expect(res.status).toBe(200);
    const pushed = (await res.json()) as Record<string, unknown>;
    expect(pushed).toMatchObject({ maxConnections: 1, topics: [{ match: "room:*", maxChannels: 5 }], source: "pushed", ttlSeconds: 1 });
    // /stats reports the revision the PUT answered: the operator then knows what the sidecar holds.
    expect((await sidecar.stats()).config).toEqual({ source: "pushed", revision: pushed.revision });
    const expiresAt = Date.parse(pushed.expiresAt as string);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 1000);
    const first = await tryUpgrade(sidecar.url);
    expect(first.status).toBe(101);
    open.push(first.ws!);
    expect((await tryUpgrade(sidecar.url)).status).toBe(503); // the pushed cap of 1 holds

    // a refresh keeps the pushed values past the first deadline (polled, no fixed sleeps)
    const refresh = await put({ ttlSeconds: 3 });
    expect(refresh.status).toBe(200);
    expect(Date.parse(((await refresh.json()) as { expiresAt: string }).expiresAt)).toBeGreaterThan(expiresAt);
    await waitFor(() => Date.now(), (now) => now > expiresAt + 100, "the first deadline to pass", 5000);
    expect(await getConfig()).toMatchObject({ maxConnections: 1, source: "pushed" });

    const back = await waitFor(getConfig, (c) => c.source === "flags", "the pushed config to expire", 5000);
    expect(back).toMatchObject({ maxConnections: 50, topics: [], expiresAt: null, ttlSeconds: null });
    const held = (await sidecar.stats()).config!;
    expect(held.source).toBe("flags");
    expect(held.revision).not.toBe(pushed.revision);
    const again = await tryUpgrade(sidecar.url);
    expect(again.status).toBe(101); // the flags' cap of 50 is back
    open.push(again.ws!);
    expect(log.join("\n")).toMatch(/pushed values expired .*back to flag values \(maxConnections=50/);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain("connmeter_config_pushed 0");
  });

  it("admits no more than a pushed connectionBudget below the pod cap (0 admits nobody), and DELETE /config lifts it at once", async () => {
    const log: string[] = [];
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN, limits: { maxConnections: 50 }, log: (m) => log.push(m) });
    const call = (method: string, body?: unknown) =>
      fetch(`${sidecar.adminUrl}/config`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { authorization: `Bearer ${TOKEN}` } });
    expect((await call("PUT", { connectionBudget: -1 })).status).toBe(400);
    expect((await call("PUT", { connectionBudget: 0, ttlSeconds: 60 })).status).toBe(200);
    const refused = await tryUpgrade(sidecar.url);
    expect(refused.status).toBe(503);
    expect((await fetch(`${sidecar.adminUrl}/readyz`)).status).toBe(503);
    expect((await call("PUT", { connectionBudget: 1, ttlSeconds: 60 })).status).toBe(200);
    const first = await tryUpgrade(sidecar.url);
    expect(first.status).toBe(101);
    open.push(first.ws!);
    expect((await tryUpgrade(sidecar.url)).status).toBe(503);

    expect((await fetch(`${sidecar.adminUrl}/config`, { method: "DELETE" })).status).toBe(401);
    const lifted = await call("DELETE");
    expect(lifted.status).toBe(200);
    expect(await lifted.json()).toMatchObject({ maxConnections: 50, connectionBudget: null, source: "flags", expiresAt: null });
    const second = await tryUpgrade(sidecar.url);
    expect(second.status).toBe(101);
    open.push(second.ws!);
    expect(log.join("\n")).toMatch(/lifted by DELETE \/config; back to flag values/);
  });

  it("refuses PUT /config when no admin token is configured, saying how to enable it", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const res = await fetch(`${sidecar.adminUrl}/config`, { method: "PUT", body: "{}" });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toMatch(/CONNMETER_ADMIN_TOKEN/);
  });
});
