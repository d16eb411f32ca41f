// How long can one client, or one admin scraper, stall everybody else through the sidecar?
// Shared by the stall integration tests (sidecar in-process) and `make bench` (sidecar as its
// own process): an app with an echo endpoint and a sink endpoint that accepts
// permessage-deflate, a decompression bomb, and probes that time echo round trips of another
// socket and /healthz requests while something hostile runs.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { constants, deflateRawSync } from "node:zlib";
import WebSocket, { WebSocketServer } from "ws";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B5F";
/** Inflated bytes per repeated piece of the bomb (compressed once, repeated). */
const BOMB_PIECE_BYTES = 16 * 1024 * 1024;

export interface StallApp {
  url: string;
  /** Bytes the sink endpoint received after its 101 (to check that the relay lost nothing). */
  sinkBytes(): number;
  close(): Promise<void>;
}

/**
 * The app behind the sidecar: `/sink…` answers the upgrade with `permessage-deflate` (context
 * takeover both ways, as most servers do) and reads and drops everything; any other path is a
 * `ws` echo without compression.
 */
export async function startStallApp(): Promise<StallApp> {
  const server = http.createServer((_req, res) => res.end("ok"));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  let sinkBytes = 0;
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    if (!(req.url ?? "").startsWith("/sink")) {
      wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })));
      return;
    }
    const accept = createHash("sha1").update(`${String(req.headers["sec-websocket-key"])}${WS_GUID}`).digest("base64");
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
    );
    sinkBytes += head.length;
    socket.on("data", (d: Buffer) => void (sinkBytes += d.length));
    socket.on("error", () => {});
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sinkBytes: () => sinkBytes,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * One masked, compressed text frame that inflates to `inflatedBytes` zeros (a multiple of
 * 16 MiB): ~1 MiB of wire bytes per GiB. Built from one compressed 16 MiB piece repeated:
 * each piece ends in a sync flush on a byte boundary and only reaches back into zeros, so the
 * concatenation is one valid DEFLATE stream.
 */
export function deflateBombFrame(inflatedBytes: number): Buffer {
  const piece = deflateRawSync(Buffer.alloc(BOMB_PIECE_BYTES), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  const pieces = Math.max(1, Math.round(inflatedBytes / BOMB_PIECE_BYTES));
  const payload = Buffer.concat(Array.from({ length: pieces }, () => piece));
  return maskedFrame(payload.subarray(0, payload.length - 4), 0x1, true); // the 00 00 ff ff tail is implied
}

function maskedFrame(payload: Buffer, opcode: number, rsv1: boolean): Buffer {
  const n = payload.length;
  const header = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (n < 126) header[1] = 0x80 | n;
  else if (n < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(n, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  const masked = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([header, mask, masked]);
}

/** A raw client socket upgraded through the sidecar to the app's `/sink`, with permessage-deflate negotiated. */
export async function openSinkSocket(sidecarUrl: string): Promise<Socket> {
  const { hostname, port } = new URL(sidecarUrl);
  const socket = connect(Number(port), hostname);
  socket.on("error", () => {});
  await once(socket, "connect");
  socket.write(
    "GET /sink/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
  );
  let head = "";
  while (!head.includes("\r\n\r\n")) head += String((await once(socket, "data"))[0]);
  if (!head.startsWith("HTTP/1.1 101") || !/permessage-deflate/i.test(head)) throw new Error(`the sink upgrade failed: ${head}`);
  return socket;
}

export interface StallReport {
  /** Longest echo round trip of another socket through the sidecar, in ms. */
  echoMaxMs: number;
  echoRoundTrips: number;
  /** Echo round trips that completed while `during` ran (the load under test), not before or after. */
  echoRoundTripsDuring: number;
  /** Longest GET /healthz on the admin port, in ms. */
  healthzMaxMs: number;
  healthzRequests: number;
  healthzFailures: number;
}

/**
 * Runs `during` while a bystander socket echoes one small message at a time through the
 * sidecar and a loop GETs /healthz, and reports the worst wait each saw. Each probe has one
 * request in flight, so a stalled event loop shows up as one long round trip.
 */
export async function measureStalls(sidecarUrl: string, adminUrl: string, during: () => Promise<void>): Promise<StallReport> {
  const ws = new WebSocket(`${sidecarUrl.replace(/^http/, "ws")}/echo`, { perMessageDeflate: false });
  await once(ws, "open");
  const report: StallReport = { echoMaxMs: 0, echoRoundTrips: 0, echoRoundTripsDuring: 0, healthzMaxMs: 0, healthzRequests: 0, healthzFailures: 0 };
  let running = true;
  const echo = async (): Promise<void> => {
    while (running) {
      const t0 = performance.now();
      const reply = once(ws, "message");
      ws.send("ping");
      await reply;
      report.echoMaxMs = Math.max(report.echoMaxMs, performance.now() - t0);
      report.echoRoundTrips++;
    }
  };
  const healthz = async (): Promise<void> => {
    while (running) {
      const t0 = performance.now();
      try {
        await (await fetch(`${adminUrl}/healthz`)).text();
      } catch {
        report.healthzFailures++; // a reused keep-alive connection the server closed meanwhile
      }
      report.healthzMaxMs = Math.max(report.healthzMaxMs, performance.now() - t0);
      report.healthzRequests++;
    }
  };
  const probes = [echo(), healthz()];
  try {
    await sleep(200); // both probes warmed up
    const before = report.echoRoundTrips;
    await during();
    report.echoRoundTripsDuring = report.echoRoundTrips - before;
  } finally {
    running = false;
    await Promise.all(probes);
    ws.terminate();
  }
  return report;
}

export interface BombResult extends StallReport {
  /** Wire bytes of the bomb's frame, and whether every one of them reached the app. */
  frameBytes: number;
  relayedAll: boolean;
  /** connmeter_messages_uninspected_total for client→server after the bomb. */
  uninspected: number;
  /** connmeter_connections_uninspected while the bomb's socket was still open. */
  uninspectedConnections: number;
}

/**
 * One client sends one compressed message that inflates to `inflatedBytes` zeros (1 GiB is
 * ~1 MiB on the wire) in a single write, while {@link measureStalls} watches the others.
 * Done when the app has every byte and the sidecar reports the message uninspected (or after
 * `settleMs` more, for a sidecar that never does).
 */
export async function runDeflateBomb(sidecarUrl: string, adminUrl: string, app: StallApp, inflatedBytes: number, settleMs = 15_000): Promise<BombResult> {
  const frame = deflateBombFrame(inflatedBytes);
  const uninspected = async (): Promise<number> => {
    const page = await fetch(`${adminUrl}/metrics`).then((r) => r.text(), () => "");
    return metricValue(page, 'connmeter_messages_uninspected_total{direction="client_to_server",reason="inflate_limit"}');
  };
  const before = await uninspected();
  let relayedAll = false;
  let uninspectedConnections = 0;
  const stalls = await measureStalls(sidecarUrl, adminUrl, async () => {
    const socket = await openSinkSocket(sidecarUrl);
    const sunk = app.sinkBytes();
    socket.write(frame);
    relayedAll = await pollUntil(() => app.sinkBytes() - sunk >= frame.length, 30_000);
    await pollUntil(async () => (await uninspected()) > before, settleMs);
    await sleep(300);
    uninspectedConnections = metricValue(await (await fetch(`${adminUrl}/metrics`)).text(), "connmeter_connections_uninspected");
    socket.destroy();
  });
  return { ...stalls, frameBytes: frame.length, relayedAll, uninspected: (await uninspected()) - before, uninspectedConnections };
}

/** Plain JS for a child process: `scrapes` concurrent GETs of a URL; prints how many failed. */
const SCRAPER = `
const [url, n] = process.argv.slice(1);
let failed = 0;
Promise.all(Array.from({ length: Number(n) }, () =>
  fetch(url).then((r) => r.text()).then((t) => { if (!t.includes("connmeter_")) failed++; }, () => { failed++; }),
)).then(() => console.log(failed));
`;

/**
 * `scrapes` concurrent GET /metrics from a child process (so the scrapers' own CPU is not
 * charged to the process under test when the sidecar runs in it) while {@link measureStalls}
 * watches the data path.
 */
export async function runMetricsStorm(sidecarUrl: string, adminUrl: string, scrapes: number): Promise<StallReport & { failedScrapes: number }> {
  let failedScrapes = -1;
  const stalls = await measureStalls(sidecarUrl, adminUrl, async () => {
    const child = spawn(process.execPath, ["-e", SCRAPER, `${adminUrl}/metrics`, String(scrapes)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await once(child, "exit");
    failedScrapes = out.trim() === "" ? scrapes : Number(out.trim());
  });
  return { ...stalls, failedScrapes };
}

/** Polls `check` every 20 ms until it holds or `timeoutMs` passes; resolves with whether it held. */
export async function pollUntil(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    if (await check()) return true;
    await sleep(20);
  }
  return false;
}

/** The value of one sample line of a Prometheus text page, or 0 when absent. */
export function metricValue(page: string, sample: string): number {
  const line = page.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Plain JS for a child process: opens `n` raw WebSockets to the echo endpoint (no compression,
 * so the sidecar's join gate holds their messages when topic budgets are set) and sends each a
 * 60 KB join one byte per write, every socket once per `everyMs`, until told to stop on stdin.
 * Prints "open" once all are upgraded, then at the end the bytes it wrote.
 */
const DRIBBLER = `
const net = require("node:net");
const crypto = require("node:crypto");
const [url, n, everyMs] = process.argv.slice(1);
const { hostname, port } = new URL(url);
const body = '["1","1","room:dribble","phx_join",{"pad":"' + "x".repeat(60000) + '"}]';
const payload = Buffer.from(body);
const head = Buffer.from([0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0]);
head.writeUInt32BE(payload.length, 6);
const mask = crypto.randomBytes(4);
const masked = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
const frame = Buffer.concat([head, mask, masked]);
const sockets = [];
let opened = 0, written = 0;
for (let i = 0; i < Number(n); i++) {
  const s = net.connect(Number(port), hostname);
  s.on("error", () => {});
  s.once("connect", () => s.write("GET /echo/websocket?vsn=2.0.0 HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"));
  s.once("data", () => { s.at = 0; sockets.push(s); if (++opened === Number(n)) process.stdout.write("open\\n"); });
}
const timer = setInterval(() => {
  for (const s of sockets) if (s.at < frame.length && !s.writableNeedDrain) { s.write(frame.subarray(s.at, s.at + 1)); s.at++; written++; }
}, Number(everyMs));
process.stdin.on("data", () => { clearInterval(timer); for (const s of sockets) s.destroy(); console.log(written); process.exit(0); });
`;

export interface CrowdResult extends StallReport {
  bombs: number;
  dribblers: number;
  /** Bytes the dribblers wrote one per write while the bombs ran. */
  dribbledBytes: number;
  /** Every bomb's bytes reached the app. */
  relayedAll: boolean;
  /** Bomb messages the sidecar reported uninspected (inflate cap). */
  uninspected: number;
}

/**
 * `bombs` clients each send one compressed message inflating to `inflatedBytes` at the same
 * moment, while `dribblers` sockets (in a child process) each send a join one byte per write,
 * and {@link measureStalls} watches the others. Done when the app has every bomb byte and the
 * sidecar reports them uninspected, or after `settleMs`.
 */
export async function runBombsAndDribblers(sidecarUrl: string, adminUrl: string, app: StallApp, opts: { bombs: number; dribblers: number; inflatedBytes: number; dribbleEveryMs: number; settleMs?: number }): Promise<CrowdResult> {
  const frame = deflateBombFrame(opts.inflatedBytes);
  const uninspected = async (): Promise<number> => {
    const page = await fetch(`${adminUrl}/metrics`).then((r) => r.text(), () => "");
    return metricValue(page, 'connmeter_messages_uninspected_total{direction="client_to_server",reason="inflate_limit"}');
  };
  const child = spawn(process.execPath, ["-e", DRIBBLER, sidecarUrl, String(opts.dribblers), String(opts.dribbleEveryMs)], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  let relayedAll = false;
  let dribbledBytes = 0;
  const before = await uninspected();
  try {
    if (!(await pollUntil(() => out.includes("open"), 60_000))) throw new Error(`the ${opts.dribblers} dribbling sockets did not all open within 60 s`);
    const stalls = await measureStalls(sidecarUrl, adminUrl, async () => {
      const sockets = await Promise.all(Array.from({ length: opts.bombs }, () => openSinkSocket(sidecarUrl)));
      const sunk = app.sinkBytes();
      for (const s of sockets) s.write(frame);
      relayedAll = await pollUntil(() => app.sinkBytes() - sunk >= frame.length * opts.bombs, 60_000);
      await pollUntil(async () => (await uninspected()) - before >= opts.bombs, opts.settleMs ?? 15_000);
      for (const s of sockets) s.destroy();
    });
    child.stdin.write("stop\n");
    await once(child, "exit");
    dribbledBytes = Number(out.split("\n").filter((l) => /^\d+$/.test(l.trim()))[0] ?? 0);
    return { ...stalls, bombs: opts.bombs, dribblers: opts.dribblers, dribbledBytes, relayedAll, uninspected: (await uninspected()) - before };
  } finally {
    if (child.exitCode === null) child.kill();
  }
}
