import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { SIDECAR_MAIN as MAIN, startSidecarProcess } from "../../support/sidecar-process.js";
import { waitFor } from "../../support/wait.js";

describe("the sidecar process", () => {
  let app: PhoenixServer;
  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterAll(async () => {
    await app?.close();
  });

  it("drains on SIGTERM: readiness off, no new upgrades, open sockets closed with 1001 at the deadline, exit 0", async () => {
    const { child, port, adminPort, output } = await startSidecarProcess([`--upstream=${app.url}`, "--drain-seconds=2"]);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket/websocket?vsn=2.0.0`);
    await once(ws, "open");
    const closed = once(ws, "close") as Promise<[number, Buffer]>;
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);

    child.kill("SIGTERM");
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status, (s) => s === 503, "readiness off after SIGTERM", 5000);
    const refused = await new Promise<number>((resolve) => {
      const late = new WebSocket(`ws://127.0.0.1:${port}/socket/websocket?vsn=2.0.0`);
      late.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      late.on("open", () => resolve(101));
      late.on("error", () => resolve(-1));
    });
    expect(refused).toBe(503);
    expect(ws.readyState).toBe(WebSocket.OPEN); // existing sockets stay until the deadline

    const [code] = await closed;
    expect(code).toBe(1001);
    const [exitCode] = (await once(child, "exit")) as [number];
    expect(exitCode).toBe(0);
    expect(output()).toMatch(/drain ended by force/);
  });

  it("exits 2 with the flag and the fix named on bad flags", async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`make build\``);
    const child = spawn(process.execPath, [MAIN, "--listen=nope"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(2);
    expect(err).toMatch(/--listen must be host:port/);
  });
});
