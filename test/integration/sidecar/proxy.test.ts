import { randomBytes } from "node:crypto";
import http from "node:http";
import { connect, type Socket } from "node:net";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";

/** A plain upstream: echoes request heads over HTTP and messages over WebSocket. */
async function startUpstream() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json", "x-upstream": "yes" });
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
  });
  const wss = new WebSocketServer({ server, handleProtocols: (protocols) => (protocols.has("phx") ? "phx" : false) });
  const received: Buffer[] = [];
  wss.on("connection", (ws, req) => {
    ws.on("message", (data: Buffer, isBinary) => {
      received.push(data);
      ws.send(data, { binary: isBinary });
    });
    ws.send(JSON.stringify({ xff: req.headers["x-forwarded-for"] ?? null }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function openWs(url: string, protocols?: string[]): Promise<{ ws: WebSocket; first: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, "ws") + "/echo", protocols);
    ws.once("message", (data) => resolve({ ws, first: (data as Buffer).toString() }));
    ws.once("error", reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once("message", (data: Buffer, isBinary) => resolve({ data, isBinary })));
}

describe("the sidecar as a proxy", () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let sidecar: SidecarHandle;

  beforeAll(async () => {
    upstream = await startUpstream();
    sidecar = await startSidecar({ upstream: upstream.url });
  });
  afterAll(async () => {
    await sidecar?.close();
    await upstream?.close();
  });

  it("forwards plain HTTP as is and sets X-Forwarded-For and -Proto", async () => {
    const res = await fetch(`${sidecar.url}/some/path?q=1`, { method: "POST", body: "hello", headers: { "x-custom": "kept" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-upstream")).toBe("yes");
    const echoed = (await res.json()) as { method: string; url: string; headers: Record<string, string> };
    expect(echoed).toMatchObject({ method: "POST", url: "/some/path?q=1" });
    expect(echoed.headers).toMatchObject({ "x-custom": "kept", "x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http" });
  });

  it("forwards upgrades with the subprotocol and X-Forwarded-For, relaying every byte unchanged", async () => {
    const { ws, first } = await openWs(sidecar.url, ["phx"]);
    expect(ws.protocol).toBe("phx");
    expect(JSON.parse(first)).toEqual({ xff: "127.0.0.1" });
    const big = Buffer.alloc(200_000, 7);
    for (const payload of [Buffer.from("not json at all"), Buffer.from("[1,2"), Buffer.from([0, 9, 9, 9]), big]) {
      const echoed = nextMessage(ws);
      ws.send(payload, { binary: payload[0] === 0 || payload === big });
      expect((await echoed).data.equals(payload)).toBe(true);
    }
    ws.close();
  });

  it("counts malformed Phoenix messages as unparsed and keeps relaying", async () => {
    const before = (await sidecar.stats()).unparsedMessages;
    const { ws } = await openWs(sidecar.url);
    const echoed = nextMessage(ws);
    ws.send("{{{ definitely not phoenix");
    await echoed;
    // the greeting (JSON, but no topic or event), the client's message and its echo
    const after = await waitFor(sidecar.stats, (s) => s.unparsedMessages >= before + 3, "unparsed messages counted");
    expect(after.unparsedMessages).toBe(before + 3);
    ws.close();
    await waitFor(sidecar.stats, (s) => s.connections === 0, "socket closed");
  });

  it("relays an app's refusal of an upgrade (status, headers, body) and holds no connection", async () => {
    const refusing = http.createServer();
    refusing.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 403 Forbidden\r\nX-Reason: bad vsn\r\nContent-Length: 5\r\n\r\nnope!"));
    refusing.listen(0, "127.0.0.1");
    await once(refusing, "listening");
    const front = await startSidecar({ upstream: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}` });
    try {
      const answer = await new Promise<{ status: number; reason: string | undefined; body: string }>((resolve, reject) => {
        const ws = new WebSocket(front.url.replace(/^http/, "ws") + "/socket/websocket?vsn=9");
        ws.on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, reason: res.headers["x-reason"] as string | undefined, body }));
        });
        ws.on("open", () => reject(new Error("the upgrade succeeded")));
        ws.on("error", () => {});
      });
      expect(answer).toEqual({ status: 403, reason: "bad vsn", body: "nope!" });
      expect((await front.stats()).connections).toBe(0);
    } finally {
      await front.close();
      refusing.close();
    }
  });

  it("relays random bytes after the 101 unchanged both ways, counts them unparsed and stays up", async () => {
    const fromClient: Buffer[] = [];
    const fromApp: Buffer[] = [];
    const rawApp = http.createServer();
    rawApp.on("upgrade", (_req, socket: Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
      socket.on("data", (d: Buffer) => {
        fromClient.push(d);
        const junk = randomBytes(d.length); // junk back, as much as it got
        fromApp.push(junk);
        socket.write(junk);
      });
      socket.on("error", () => {});
    });
    rawApp.listen(0, "127.0.0.1");
    await once(rawApp, "listening");
    const front = await startSidecar({ upstream: `http://127.0.0.1:${(rawApp.address() as AddressInfo).port}` });
    try {
      const socket = connect(Number(new URL(front.url).port), "127.0.0.1");
      socket.write("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
      let received = Buffer.alloc(0);
      socket.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
      await waitFor(() => received.indexOf("\r\n\r\n"), (i) => i > 0, "the 101");
      const headLength = received.indexOf("\r\n\r\n") + 4;
      const sent: Buffer[] = [];
      for (let i = 0; i < 50; i++) {
        const junk = randomBytes(1 + Math.floor(Math.random() * 3000));
        sent.push(junk);
        socket.write(junk);
      }
      const total = sent.reduce((n, b) => n + b.length, 0);
      await waitFor(() => Buffer.concat(fromClient).length, (n) => n === total, "every client byte at the app");
      await waitFor(() => received.length - headLength, (n) => n === total, "every app byte at the client");
      expect(Buffer.concat(fromClient).equals(Buffer.concat(sent))).toBe(true);
      expect(received.subarray(headLength).equals(Buffer.concat(fromApp))).toBe(true);
      socket.destroy();
      const after = await waitFor(front.stats, (st) => st.connections === 0, "the connection to close");
      expect(after.unparsedMessages).toBeGreaterThan(0); // both readers gave up on the junk
      expect((await fetch(`${front.adminUrl}/healthz`)).status).toBe(200);
    } finally {
      await front.close();
      rawApp.close();
    }
  });

  it("answers 502 for HTTP and for upgrades when the app is down", async () => {
    const dead = await startSidecar({ upstream: "http://127.0.0.1:1" });
    try {
      const res = await fetch(`${dead.url}/`);
      expect(res.status).toBe(502);
      expect(await res.text()).toMatch(/upstream unavailable/);
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(dead.url.replace(/^http/, "ws") + "/socket/websocket");
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => reject(new Error("upgrade to a dead app succeeded")));
        ws.on("error", () => {});
      });
      expect(status).toBe(502);
      expect((await dead.stats()).connections).toBe(0);
      const metrics = await (await fetch(`${dead.adminUrl}/metrics`)).text();
      expect(metrics).toContain("connmeter_http_upstream_errors_total 1");
      expect(metrics).toContain('connmeter_connections_rejected_total{reason="upstream_unavailable"} 1');
    } finally {
      await dead.close();
    }
  });
});
