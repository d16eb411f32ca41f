// Throughput of the tap's FrameReader against ws's own Receiver, on the same bytes in the same run.
//
//   npx tsc -p tsconfig.build.json && node dist/bench/frame-reader.bench.js [--seconds=2]
//
// Workloads: masked client→server text messages of 100 B and 16 KiB, uncompressed and with
// permessage-deflate (context takeover), as ws's Sender frames them, cut into 64 KiB reads.
// "ours" delivers every payload byte to a counting sink; "ours, peek" is how the tap really runs
// (the sink declines a message after its first piece: the first 256 bytes of a masked message are
// unmasked, not the whole message, but with context takeover the rest must still be inflated); "ws" is ws's
// Receiver (the parser of a real endpoint: it buffers whole messages and inflates asynchronously with
// node:zlib), UTF-8 validation off. MB/s counts message payload (inflated) megabytes of 10^6 bytes
// processed; ratio = ours / ws throughput (above 1: ours is faster). Each figure is the best run.
import { constants, createDeflateRaw } from "node:zlib";
import * as ws from "ws";
import { FrameReader, type DeflateParams, type MessageSink } from "../sidecar/ws/frame-reader.js";

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}
interface Receiver {
  write(chunk: Buffer): boolean;
  on(event: "message", listener: () => void): this;
  on(event: "error", listener: (err: Error) => void): this;
}
interface PerMessageDeflate {
  accept(offers: object[]): object;
}
// ws exports these at run time; @types/ws does not declare them.
const wsInternals = ws as unknown as {
  Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] };
  Receiver: new (options: object) => Receiver;
  PerMessageDeflate: new (options: object, isServer: boolean) => PerMessageDeflate;
};

const READ_BYTES = 64 * 1024;
const STREAM_BYTES = 8 * 1024 * 1024;
const secondsArg = process.argv.find((a) => a.startsWith("--seconds="));
const SECONDS_PER_CASE = secondsArg === undefined ? 1.5 : Number(secondsArg.slice("--seconds=".length));

interface Workload {
  name: string;
  chunks: Buffer[];
  wireBytes: number;
  payloadBytes: number;
  messages: number;
  deflate: DeflateParams | null;
}

function phoenixLike(size: number, seed: number): Buffer {
  let text = `[null,"${seed}","room:lobby","new_msg",{"body":"`;
  for (let i = 0; text.length < size - 3; i++) text += `row ${seed + i} of topic room:${(seed * 31 + i) % 97}; `;
  return Buffer.from(text.slice(0, size - 3) + '"}]');
}

async function deflateEach(messages: Buffer[]): Promise<Buffer[]> {
  const deflater = createDeflateRaw({ windowBits: 15 });
  const pending: Buffer[] = [];
  deflater.on("data", (chunk: Buffer) => pending.push(chunk));
  const out: Buffer[] = [];
  for (const message of messages) {
    deflater.write(message);
    await new Promise<void>((resolve) => deflater.flush(constants.Z_SYNC_FLUSH, () => resolve()));
    const flushed = Buffer.concat(pending.splice(0));
    out.push(flushed.subarray(0, flushed.length - 4)); // permessage-deflate strips 00 00 ff ff
  }
  deflater.close();
  return out;
}

async function workload(messageBytes: number, compressed: boolean): Promise<Workload> {
  const count = Math.max(1, Math.floor(STREAM_BYTES / (messageBytes + 8)));
  const messages = Array.from({ length: count }, (_, i) => phoenixLike(messageBytes, i));
  const payloads = compressed ? await deflateEach(messages) : messages;
  const frames = payloads.map((payload) =>
    Buffer.concat(wsInternals.Sender.frame(payload, { fin: true, opcode: 1, mask: true, readOnly: true, rsv1: compressed })),
  );
  const stream = Buffer.concat(frames);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += READ_BYTES) chunks.push(stream.subarray(at, at + READ_BYTES));
  const deflate = compressed
    ? { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 }
    : null;
  const name = `${messageBytes >= 1024 ? `${messageBytes / 1024} KiB` : `${messageBytes} B`} masked, ${compressed ? "deflate" : "plain"}`;
  const payloadBytes = messages.reduce((sum, m) => sum + m.length, 0);
  return { name, chunks, wireBytes: stream.length, payloadBytes, messages: count, deflate };
}

class CountingSink implements MessageSink {
  messages = 0;
  bytes = 0;
  constructor(private readonly peek: boolean) {}
  onMessageStart(): void {}
  onMessageData(data: Buffer, start: number, end: number): boolean {
    this.bytes += data[start]! + end - start; // touch the data so the work cannot be skipped
    return !this.peek;
  }
  onMessageEnd(): void {
    this.messages++;
  }
  onClose(): void {}
  onError(err: Error): void {
    this.error = err;
  }
  error: Error | null = null;
}

function runOurs(w: Workload, peek: boolean): Promise<void> {
  const sink = new CountingSink(peek);
  const reader = new FrameReader(sink, { fromClient: true, deflate: w.deflate, maxMessageBytes: 1 << 20 });
  for (const chunk of w.chunks) reader.push(chunk);
  reader.destroy();
  if (sink.error !== null) throw sink.error;
  if (sink.messages !== w.messages) throw new Error(`ours saw ${sink.messages} of ${w.messages} messages`);
  return Promise.resolve();
}

/** ws's Receiver unmasks in place, so it gets a fresh copy of the stream each run (copied untimed). */
function copyChunks(w: Workload): Buffer[] {
  return w.chunks.map((chunk) => Buffer.from(chunk));
}

function runWs(w: Workload, chunks: Buffer[]): Promise<void> {
  const extensions: Record<string, PerMessageDeflate> = {};
  if (w.deflate !== null) {
    const pmd = new wsInternals.PerMessageDeflate({}, true);
    pmd.accept([{}]);
    extensions["permessage-deflate"] = pmd;
  }
  const receiver = new wsInternals.Receiver({ isServer: true, extensions, skipUTF8Validation: true, maxPayload: 0 });
  return new Promise((resolve, reject) => {
    let seen = 0;
    receiver.on("message", () => {
      if (++seen === w.messages) resolve();
    });
    receiver.on("error", reject);
    for (const chunk of chunks) receiver.write(chunk);
  });
}

/** Runs `fn` on `prepare()`'s input for about SECONDS_PER_CASE (after a warm-up); best seconds per run. */
async function measure<T>(prepare: () => T, fn: (input: T) => Promise<void>): Promise<number> {
  await fn(prepare());
  let best = Infinity;
  const deadline = performance.now() + SECONDS_PER_CASE * 1000;
  do {
    const input = prepare();
    const start = performance.now();
    await fn(input);
    best = Math.min(best, (performance.now() - start) / 1000);
  } while (performance.now() < deadline);
  return best;
}

const fmt = (n: number, digits = 0): string => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

const rows: string[][] = [["workload", "ours MB/s", "ours msg/s", "ours, peek MB/s", "ws MB/s", "ws msg/s", "ratio", "ratio, peek"]];
for (const [size, compressed] of [[100, false], [16 * 1024, false], [100, true], [16 * 1024, true]] as const) {
  const w = await workload(size, compressed);
  const ours = await measure(() => w, (input) => runOurs(input, false));
  const peek = await measure(() => w, (input) => runOurs(input, true));
  const base = await measure(() => copyChunks(w), (chunks) => runWs(w, chunks));
  const mbps = (seconds: number): number => w.payloadBytes / 1e6 / seconds;
  rows.push([
    `${w.name} (${fmt(w.wireBytes / 1e6, 1)} MB on the wire)`,
    fmt(mbps(ours), 1),
    fmt(w.messages / ours),
    fmt(mbps(peek), 1),
    fmt(mbps(base), 1),
    fmt(w.messages / base),
    `${fmt(base / ours, 2)}x`,
    `${fmt(base / peek, 2)}x`,
  ]);
}

const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
console.log(`FrameReader vs ws Receiver, node ${process.version}, ~${fmt(STREAM_BYTES / 1e6, 1)} MB of payload per stream, ${READ_BYTES / 1024} KiB reads`);
for (const row of rows) console.log(row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join("  "));
