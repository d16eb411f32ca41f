// The tap's own CPU per relayed message pair, in process: the echo traffic of `make bench`
// (a vsn 2 `echo` push from the client, the app's `phx_reply` back) pushed through real
// TappedConnections whose sockets are stand-ins that accept every write, tap on against tap off
// (`--tap off`, the bare relay's code), alternated round after round on the same machine.
// No kernel, no loopback: what is left is the JavaScript the tap adds to each message, which
// the noisy end-to-end benchmark cannot resolve on a shared 2-core machine.
//
//   npm run build && node --max-semi-space-size=16 dist/bench/tap-cost.bench.js [--seconds=1] [--rounds=7] [--bytes=100] [--batch=1] [--budgeted=1]
//
// --batch=n puts n messages in one read (pipelined pushes arriving together), as depth > 1 does.
// --budgeted=1 gives the topics' group a channel budget (never reached), as an operator's push
// does: every client read then goes through the join gate, held until its messages are decided.
// --cpu-prof on the node command line profiles it. Prints ns per message pair for each and
// the difference (the tap's price per pair).
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { performance } from "node:perf_hooks";
import { ChannelLedger, KIND_WEBSOCKET } from "../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../sidecar/ledger/topic-groups.js";
import { VSN_2 } from "../sidecar/phoenix/message.js";
import { encodeTextFrame } from "../sidecar/proxy/frame-writer.js";
import { HoldBudget } from "../sidecar/proxy/hold-budget.js";
import { TappedConnection, type ConnectionObserver } from "../sidecar/proxy/tapped-connection.js";

function arg(name: string, fallback: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? fallback : Number(a.slice(name.length + 3));
}

const SECONDS = arg("seconds", 1);
const ROUNDS = arg("rounds", 7);
const BYTES = arg("bytes", 100);
const BATCH = arg("batch", 1);
const BUDGETED = arg("budgeted", 0) === 1;
const SOCKETS = 200;

/** A socket stand-in: every write is accepted at once, pause and resume do nothing. */
class SinkSocket extends EventEmitter {
  written = 0;
  writableLength = 0;
  writableNeedDrain = false;
  write(chunk: Buffer): boolean {
    this.written += chunk.length;
    return true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(): this {
    return this;
  }
  destroy(): this {
    return this;
  }
}

const OBSERVER: ConnectionObserver = { onUnparsed: () => undefined, onUninspected: () => undefined, onConnectionClosed: () => undefined };

interface Pair {
  client: SinkSocket;
  upstream: SinkSocket;
}

function open(tap: boolean, ledger: ChannelLedger, holdBudget: HoldBudget): Pair {
  const client = new SinkSocket();
  const upstream = new SinkSocket();
  const conn = new TappedConnection(client as unknown as Duplex, upstream as unknown as Duplex, ledger.openSocket(KIND_WEBSOCKET), VSN_2, null, OBSERVER, Date.now(), { tap, holdBudget });
  conn.start();
  return { client, upstream };
}

function body(bytes: number): string {
  return `{"body":"${"x".repeat(Math.max(0, bytes - 11))}"}`;
}

/** `BATCH` pushes (masked) in one read, and the app's `BATCH` replies in another. */
function traffic(topic: string): { c2s: Buffer; s2c: Buffer } {
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  for (let i = 0; i < BATCH; i++) {
    const ref = 1000 + i;
    c2s.push(encodeTextFrame(`["1","${ref}","${topic}","echo",${body(BYTES)}]`, true));
    s2c.push(encodeTextFrame(`["1","${ref}","${topic}","phx_reply",{"response":${body(BYTES)},"status":"ok"}]`, false));
  }
  return { c2s: Buffer.concat(c2s), s2c: Buffer.concat(s2c) };
}

function round(pairs: Pair[], data: { c2s: Buffer; s2c: Buffer }[], ms: number): number {
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let k = 0; k < 20; k++) {
      for (let i = 0; i < pairs.length; i++) {
        const p = pairs[i]!;
        const d = data[i]!;
        p.client.emit("data", d.c2s);
        p.upstream.emit("data", d.s2c);
      }
      n += pairs.length * BATCH;
    }
  }
  return n;
}

function main(): void {
  const ledger = new ChannelLedger(new TopicGroups(BUDGETED ? [{ match: "room:*", maxChannels: 1e9 }] : []));
  const holdBudget = new HoldBudget();
  const data = Array.from({ length: SOCKETS }, (_, i) => traffic(`room:tp:${i}`));
  const on = Array.from({ length: SOCKETS }, () => open(true, ledger, holdBudget));
  const off = Array.from({ length: SOCKETS }, () => open(false, ledger, holdBudget));
  round(on, data, 300);
  round(off, data, 300);
  const nsOn: number[] = [];
  const nsOff: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const [pairs, out] of (r % 2 === 0 ? [[on, nsOn], [off, nsOff]] : [[off, nsOff], [on, nsOn]]) as [Pair[], number[]][]) {
      const c0 = process.cpuUsage();
      const n = round(pairs, data, SECONDS * 1000);
      const c = process.cpuUsage(c0);
      out.push(((c.user + c.system) * 1000) / n);
    }
  }
  const best = (xs: number[]): number => Math.min(...xs);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`tap cost: ${BYTES} B messages, ${BATCH} per read, ${SOCKETS} sockets, ${BUDGETED ? "a budget on the topics' group, " : ""}${ROUNDS} rounds of ${SECONDS} s each, node ${process.version}`);
  console.log(`  ns per message pair   best   median`);
  console.log(`  tap on (sidecar)     ${best(nsOn).toFixed(0).padStart(5)}   ${median(nsOn).toFixed(0).padStart(6)}`);
  console.log(`  tap off (relay)      ${best(nsOff).toFixed(0).padStart(5)}   ${median(nsOff).toFixed(0).padStart(6)}`);
  console.log(`  the tap's price      ${(best(nsOn) - best(nsOff)).toFixed(0).padStart(5)}   ${(median(nsOn) - median(nsOff)).toFixed(0).padStart(6)}`);
  console.log(JSON.stringify({ bytes: BYTES, batch: BATCH, nsPerPairOn: nsOn, nsPerPairOff: nsOff }));
}

main();
