import type WebSocket from "ws";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { startSidecar, type SidecarHandle } from "../../support/sidecar-harness.js";
import { startSidecarProcess } from "../../support/sidecar-process.js";
import WebSocketClient from "ws";

const TOKEN = "t0ken";

function tryUpgrade(url: string): Promise<{ status: number; retryAfter?: string; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocketClient(url.replace(/^http/, "ws") + "/socket/websocket?vsn=2.0.0");
    ws.on("open", () => resolve({ status: 101, ws }));
    ws.on("unexpected-response", (_req, res) => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] }));
    ws.on("error", () => {});
  });
}

describe("--await-budget-seconds", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle | undefined;
  const open: WebSocket[] = [];

  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterEach(async () => {
    for (const ws of open.splice(0)) ws.terminate();
    await sidecar?.close();
    sidecar = undefined;
  });
  afterAll(async () => {
    await app?.close();
  });

  it("refuses new upgrades with 503 + Retry-After and reports not ready until the operator's first PUT /config, then admits", async () => {
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN, awaitBudgetSeconds: 3600 });
    const refused = await tryUpgrade(sidecar.url);
    expect(refused.status).toBe(503);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(5);
    expect(app.sockets()).toBe(0); // the app was never touched
    const readyz = await fetch(`${sidecar.adminUrl}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toBe("awaiting budget\n");
    expect((await sidecar.stats()).awaitingBudget).toBe(true);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain('connmeter_connections_rejected_total{reason="awaiting_budget"} 1');

    const put = await fetch(`${sidecar.adminUrl}/config`, { method: "PUT", body: JSON.stringify({ connectionBudget: 5, ttlSeconds: 30 }), headers: { authorization: `Bearer ${TOKEN}` } });
    expect(put.status).toBe(200);
    const admitted = await tryUpgrade(sidecar.url);
    expect(admitted.status).toBe(101);
    open.push(admitted.ws!);
    expect((await fetch(`${sidecar.adminUrl}/readyz`)).status).toBe(200);
    expect((await sidecar.stats()).awaitingBudget).toBe(false);
  });

  it("an unauthorized PUT /config does not end the wait", async () => {
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN, awaitBudgetSeconds: 3600 });
    expect((await fetch(`${sidecar.adminUrl}/config`, { method: "PUT", body: "{}", headers: { authorization: "Bearer other" } })).status).toBe(401);
    expect((await tryUpgrade(sidecar.url)).status).toBe(503);
  });

  it("is off by default: a sidecar without the flag admits at once", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const admitted = await tryUpgrade(sidecar.url);
    expect(admitted.status).toBe(101);
    open.push(admitted.ws!);
  });

  it("is read from CONNMETER_AWAIT_BUDGET_SECONDS by the sidecar binary", async () => {
    const proc = await startSidecarProcess([`--upstream=${app.url}`], "pipe", { CONNMETER_AWAIT_BUDGET_SECONDS: "3600" });
    try {
      expect((await fetch(`http://127.0.0.1:${proc.adminPort}/readyz`)).status).toBe(503);
      expect((await tryUpgrade(`http://127.0.0.1:${proc.port}`)).status).toBe(503);
      expect(proc.output()).toMatch(/await-budget: refusing new upgrades until the operator's first PUT \/config or 3600s/);
    } finally {
      proc.child.kill();
    }
  });
});
