// A child of bench/scale-bench.ts: holds many Phoenix vsn 2 sockets open on raw TCP (a few
// hundred bytes of client state each, so one process holds thousands), each joined to two
// channels, and makes `active` of them push an echo once per second. Talks to the driver over
// IPC: → {type:"opened", joined, failed}; ← "stop" → {type:"stopped", pushes, replies}.
//   node dist/bench/scale-client.js <sidecarUrl> <sockets> <firstIndex> <active> <sourceAddresses>
// Source addresses 127.0.0.2… (one per 25,000 sockets) keep a loopback 4-tuple per socket
// within the ephemeral port range.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

const [url, socketsArg, firstArg, activeArg, sourcesArg] = process.argv.slice(2);
const { hostname, port } = new URL(url!);
const SOCKETS = Number(socketsArg);
const FIRST = Number(firstArg);
const ACTIVE = Number(activeArg);
const SOURCES = Math.max(1, Number(sourcesArg));
const CONCURRENCY = 200;
const UPGRADE =
  "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/** A masked client text frame (short payloads: < 64 KiB). */
function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff]);
  const mask = randomBytes(4);
  for (let i = 0; i < n; i++) payload[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, payload]);
}

const sockets: { s: Socket; index: number }[] = [];
let joined = 0;
let failed = 0;
let pushes = 0;
let replies = 0;

/** Opens socket i, joins its two topics and resolves once both replies are ok. */
function open(i: number): Promise<void> {
  return new Promise((resolve) => {
    const index = FIRST + i;
    const s = connect({ port: Number(port), host: hostname, localAddress: `127.0.0.${2 + (index % SOURCES)}` });
    let upgraded = false;
    let oks = 0;
    const done = (ok: boolean): void => {
      if (ok) {
        joined++;
        sockets.push({ s, index });
      } else {
        failed++;
        s.destroy();
      }
      resolve();
    };
    s.on("error", () => (oks < 2 ? done(false) : undefined));
    s.once("connect", () => s.write(UPGRADE));
    s.on("data", (d: Buffer) => {
      const text = d.toString("latin1");
      if (!upgraded) {
        if (!text.startsWith("HTTP/1.1 101")) return done(false);
        upgraded = true;
        s.write(Buffer.concat([frame(`["1","1","room:scale:${index}:a","phx_join",{}]`), frame(`["2","2","room:scale:${index}:b","phx_join",{}]`)]));
        return;
      }
      if (oks < 2) {
        oks += text.split('"phx_reply",{"response":{},"status":"ok"}').length - 1;
        if (oks >= 2) done(true);
      } else {
        replies += text.split('"phx_reply"').length - 1;
      }
    });
  });
}

async function main(): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < SOCKETS) await open(next++);
    }),
  );
  process.send!({ type: "opened", joined, failed });
  const active = sockets.slice(0, ACTIVE);
  let ref = 10;
  const timer = setInterval(() => {
    for (const { s, index } of active) {
      s.write(frame(`["1","${ref++}","room:scale:${index}:a","echo",{"body":"${"x".repeat(100)}"}]`));
      pushes++;
    }
  }, 1000);
  process.on("message", (m) => {
    if (m !== "stop") return;
    clearInterval(timer);
    for (const { s } of sockets) s.destroy();
    process.send!({ type: "stopped", pushes, replies }, () => process.exit(0));
  });
}

void main();
