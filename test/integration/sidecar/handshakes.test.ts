import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";
import { metricValue, startStallApp, type StallApp } from "../../support/stall-probe.js";

/** A raw socket to the sidecar that has sent `bytes` and nothing more; `closedAfterMs` resolves when the sidecar closes it. */
async function halfSent(url: string, bytes: string): Promise<{ socket: Socket; closedAfterMs: Promise<number> }> {
  const socket = connect(Number(new URL(url).port), "127.0.0.1");
  socket.on("error", () => {});
  await once(socket, "connect");
  const t0 = Date.now();
  if (bytes !== "") socket.write(bytes);
  // not events.once: it would reject on the EPIPE of a write racing the close
  return { socket, closedAfterMs: new Promise((resolve) => socket.once("close", () => resolve(Date.now() - t0))) };
}

function upgrade(url: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/echo`);
    ws.on("open", () => {
      ws.terminate();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", () => resolve(0));
  });
}

describe("sockets that never finish their request head", () => {
  let app: StallApp | undefined;
  let sidecar: SidecarHandle | undefined;
  afterEach(async () => {
    await sidecar?.close();
    await app?.close();
  });

  it("are closed after --handshake-timeout-seconds, whether they sent half a head or nothing", async () => {
    app = await startStallApp();
    sidecar = await startSidecar({ upstream: app.url, handshakeTimeoutSeconds: 1 });
    const half = await halfSent(sidecar.url, "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n");
    const silent = await halfSent(sidecar.url, "");
    const trickle = await halfSent(sidecar.url, "GET / HTTP/1.1\r\nX-Slow: ");
    const dribble = setInterval(() => trickle.socket.writable && trickle.socket.write("x"), 200); // never idle, never done
    try {
      const closed = await Promise.all([half.closedAfterMs, silent.closedAfterMs, trickle.closedAfterMs]);
      for (const ms of closed) expect(ms).toBeLessThan(1000 + 2500); // the deadline plus Node's 1 s check
    } finally {
      clearInterval(dribble);
    }
    // a real upgrade is unaffected, and its socket is not cut by the head deadline afterwards
    const ws = new WebSocket(`${sidecar.url.replace(/^http/, "ws")}/echo`);
    await once(ws, "open");
    await new Promise((r) => setTimeout(r, 1500));
    const echoed = once(ws, "message");
    ws.send("still here");
    expect(String((await echoed)[0])).toBe("still here");
    ws.terminate();
  });

  it("count apart from --max-connections, up to --max-handshakes; past it new sockets are closed at once", async () => {
    app = await startStallApp();
    sidecar = await startSidecar({ upstream: app.url, limits: { maxConnections: 2 }, maxHandshakes: 5, handshakeTimeoutSeconds: 2 });
    const held = await Promise.all(Array.from({ length: 5 }, () => halfSent(sidecar!.url, "GET / HTTP/1.1\r\n")));
    const metrics = () => fetch(`${sidecar!.adminUrl}/metrics`).then((r) => r.text());
    await waitFor(metrics, (p) => metricValue(p, "connmeter_handshakes") === 5, "5 handshaking sockets", 5000, 100);
    const refused = await halfSent(sidecar.url, "");
    expect(await refused.closedAfterMs).toBeLessThan(500);
    expect(await upgrade(sidecar.url)).toBe(0); // the cap holds for everyone meanwhile...
    await Promise.all(held.map((h) => h.closedAfterMs));
    expect(await upgrade(sidecar.url)).toBe(101); // ...and for no longer than the deadline
    expect((await sidecar.stats()).ready).toBe(true); // half-sent heads never took capacity
    const page = await waitFor(metrics, (p) => metricValue(p, "connmeter_handshakes") === 0, "no handshaking sockets", 5000, 100);
    expect(metricValue(page, "connmeter_handshakes_refused_total")).toBe(2);
  });
});
