// The virtual topic connmeter:occupancy (issue 17) under load, against baselines measured in
// the same run:
//   1. fan-out: N subscribers (default 10,000, capped by the open-files limit: the sidecar holds
//      two sockets per subscriber) on one sidecar process, one update pushed with PUT /config:
//      wall time until the last client has the push, and the sidecar's CPU for it; baseline:
//      the CPU of encoding the payload once per subscriber (what the hub avoids), measured here.
//   2. relay: the sidecar's CPU per relayed client message with occupancy off (the baseline)
//      and on with no subscriber, alternated, best of 5 each; ratio on / off.
//
//   npm run -s build && node dist/bench/occupancy-bench.js [--subscribers=10000] [--messages=200000]
//
// Clients and a minimal app (answers the upgrade, discards what it gets) are raw loopback
// sockets in this process; the sidecar is dist/sidecar/main.js in its own process.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { encodeTextFrame } from "../sidecar/proxy/frame-writer.js";
import { cpuSeconds, fdLimit, killAllChildren, startSidecar } from "./bench-procs.js";

const arg = (name: string, dflt: number): number => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const TOKEN = "occupancy-bench";
const SUBSCRIBERS = Math.min(arg("subscribers", 10_000), Math.floor((fdLimit() - 200) / 2));
const MESSAGES = arg("messages", 200_000);
const RELAY_SOCKETS = 10;
/** Relay rounds per configuration, alternated; the best of each is reported (CPU is read in 10 ms ticks). */
const ROUNDS = arg("rounds", 5);

/** The app: answers every upgrade with a 101 and counts what it receives. */
function startApp(): Promise<{ url: string; received: () => number; close: () => void }> {
  let received = 0;
  const server = http.createServer((_req, res) => res.end());
  server.on("upgrade", (req, socket: net.Socket) => {
    const accept = createHash("sha1").update(`${String(req.headers["sec-websocket-key"])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on("data", (c: Buffer) => (received += c.length));
    socket.on("error", () => socket.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port;
    resolve({ url: `http://127.0.0.1:${port}`, received: () => received, close: () => server.close() });
  }));
}

/** A raw WebSocket client; `onData` gets every byte after the 101. */
function openClient(port: number, onData: (c: Buffer) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let head = "";
    s.once("error", reject);
    s.write(`GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`);
    const onHead = (c: Buffer): void => {
      head += c.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      s.off("data", onHead);
      if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`no 101: ${head.slice(0, 80)}`));
      s.on("data", onData);
      resolve(s);
    };
    s.on("data", onHead);
  });
}

async function putConfig(adminUrl: string, body: unknown): Promise<void> {
  const res = await fetch(`${adminUrl}/config`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`PUT /config: ${res.status} ${await res.text()}`);
}

function occupancy(roomCount: number): unknown {
  return {
    ttlSeconds: 600,
    occupancy: {
      expose: ["room:*"], totals: true, intervalSeconds: 1,
      snapshot: { at: new Date().toISOString(), total: { connections: SUBSCRIBERS, channels: roomCount }, counts: { "room:*": roomCount }, nodes: [] },
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Sidecar CPU per message relayed client → app, in microseconds. */
async function relayRound(app: { received: () => number }, pid: number, sockets: net.Socket[]): Promise<number> {
  const perSocket = Math.floor(MESSAGES / sockets.length);
  const frame = encodeTextFrame(`["1","5","room:1","new_msg",{"body":"hello from the relay benchmark"}]`, true);
  const batch = Buffer.concat(Array.from({ length: 500 }, () => frame));
  const expected = app.received() + perSocket * sockets.length * frame.length;
  const cpu0 = cpuSeconds(pid);
  for (const s of sockets) {
    for (let sent = 0; sent < perSocket; sent += 500) {
      if (!s.write(batch)) await new Promise((r) => s.once("drain", r));
    }
  }
  await until("the app to receive the relay round", () => app.received() >= expected, 120_000);
  return ((cpuSeconds(pid) - cpu0) * 1e6) / (perSocket * sockets.length);
}

async function main(): Promise<void> {
  process.env.CONNMETER_ADMIN_TOKEN = TOKEN;
  const app = await startApp();
  const sidecar = await startSidecar(app.url);
  const port = Number(new URL(sidecar.url).port);
  console.log(`occupancy bench: ${SUBSCRIBERS} subscribers, ${MESSAGES} relayed messages per round; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);

  // 2. relay cost, occupancy off vs on with no subscriber (before any subscriber exists).
  const relay = await Promise.all(Array.from({ length: RELAY_SOCKETS }, () => openClient(port, () => {})));
  const off: number[] = [];
  const on: number[] = [];
  await relayRound(app, sidecar.pid, relay); // warm-up
  for (let i = 0; i < ROUNDS; i++) {
    await fetch(`${sidecar.adminUrl}/config`, { method: "DELETE", headers: { authorization: `Bearer ${TOKEN}` } });
    off.push(await relayRound(app, sidecar.pid, relay));
    await putConfig(sidecar.adminUrl, occupancy(1));
    on.push(await relayRound(app, sidecar.pid, relay));
  }
  relay.forEach((s) => s.destroy());

  // 1. fan-out.
  await putConfig(sidecar.adminUrl, occupancy(1));
  let replies = 0;
  let pushed = 0;
  const join = encodeTextFrame(`["1","1","connmeter:occupancy","phx_join",{"topics":["room:*"]}]`, true);
  const clients: net.Socket[] = [];
  for (let i = 0; i < SUBSCRIBERS; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, SUBSCRIBERS - i) }, () => {
      let state = 0;
      return openClient(port, (c) => {
        if (state === 0 && c.includes('"phx_reply"')) { state = 1; replies++; }
        else if (state === 1 && c.includes('"occupancy"')) { state = 2; pushed++; }
      });
    }));
    for (const s of batch) s.write(join);
    clients.push(...batch);
  }
  await until("every join reply", () => replies === SUBSCRIBERS, 120_000);
  const stats = (await (await fetch(`${sidecar.adminUrl}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { occupancySubscribers: number; channels: number };
  await sleep(1100); // past the interval since the last push
  const cpu0 = cpuSeconds(sidecar.pid);
  const t0 = performance.now();
  await putConfig(sidecar.adminUrl, occupancy(2));
  await until("every subscriber's push", () => pushed === SUBSCRIBERS, 120_000);
  const fanoutMs = performance.now() - t0;
  const fanoutCpuMs = (cpuSeconds(sidecar.pid) - cpu0) * 1000;

  // Baseline: what encoding once per subscriber would cost (the hub encodes once per distinct request).
  const payload = { total: { connections: SUBSCRIBERS, channels: 2 }, topics: { "room:*": 2 }, at: new Date().toISOString() };
  const e0 = process.cpuUsage();
  for (let i = 0; i < SUBSCRIBERS; i++) encodeTextFrame(JSON.stringify([null, null, "connmeter:occupancy", "occupancy", payload]), false);
  const e = process.cpuUsage(e0);
  const naiveEncodeMs = (e.user + e.system) / 1000;

  const best = (xs: number[]) => Math.min(...xs);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const result = {
    subscribers: SUBSCRIBERS,
    statsSubscribers: stats.occupancySubscribers,
    statsChannels: stats.channels,
    fanoutWallMs: Math.round(fanoutMs),
    fanoutSidecarCpuMs: Math.round(fanoutCpuMs),
    naivePerSubscriberEncodeCpuMs: Math.round(naiveEncodeMs),
    relayCpuUsPerMessageOff: best(off),
    relayCpuUsPerMessageOnNoSubscriber: best(on),
    relayRatioOnOverOff: best(on) / best(off),
    relayMedianRatioOnOverOff: median(on) / median(off),
    relayRounds: { off, on },
  };
  console.table({
    "fan-out: wall ms (PUT to last push received)": result.fanoutWallMs,
    "fan-out: sidecar CPU ms (includes the PUT)": result.fanoutSidecarCpuMs,
    "baseline: encode once per subscriber, CPU ms": result.naivePerSubscriberEncodeCpuMs,
    "relay: sidecar CPU µs/msg, occupancy off": result.relayCpuUsPerMessageOff.toFixed(2),
    "relay: sidecar CPU µs/msg, on, no subscriber": result.relayCpuUsPerMessageOnNoSubscriber.toFixed(2),
    "relay: ratio on / off (best of each)": result.relayRatioOnOverOff.toFixed(2),
    "relay: ratio on / off (medians)": result.relayMedianRatioOnOverOff.toFixed(2),
  });
  console.log(JSON.stringify(result));
  clients.forEach((s) => s.destroy());
  app.close();
  await sidecar.stop();
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  killAllChildren();
  process.exit(1);
});
