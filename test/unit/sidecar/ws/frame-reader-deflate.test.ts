import { randomBytes } from "node:crypto";
import { constants, deflateRawSync } from "node:zlib";
import fc from "fast-check";
import type { PerMessageDeflateOptions } from "ws";
import { beforeAll, describe, expect, it } from "vitest";
import { FrameReader, parseDeflateExtension, type DeflateParams, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
import { readAll, splitAt, summarize, type SinkEvent, type WantPolicy } from "./recording-sink.js";
import { captureConversation, endOfHttpHead, type Capture, type Step } from "./loopback-capture.js";
import { wsFrame } from "./ws-internals.js";

const BIG = 1 << 20;
const heartbeat = Buffer.from('[null,"6","phoenix","heartbeat",{}]');
const reply = Buffer.from('[null,"6","phoenix","phx_reply",{"response":{},"status":"ok"}]');
const rows = Buffer.from(JSON.stringify(Array.from({ length: 1500 }, (_, i) => ({ id: i, topic: `room:${i % 13}`, on: i % 2 === 0 }))));

/** Small messages only, so every split point of the whole stream can be tried. */
const SMALL_STEPS: Step[] = [
  { from: "client", data: heartbeat, binary: false },
  { from: "server", data: reply, binary: false },
  { from: "client", data: heartbeat, binary: false }, // identical: shrinks only with context takeover
  { from: "server", data: reply, binary: false },
  { from: "client", data: Buffer.from('["1","1","room:lobby","phx_join",{}]'), binary: false, fragments: 3 },
  { from: "server", data: Buffer.from([0, 1, 2, 3, 250, 251, 0, 0, 0, 0]), binary: true },
  { from: "client", data: Buffer.from("sent uncompressed"), binary: false, compress: false },
  { from: "server", data: Buffer.alloc(0), binary: false },
  { from: "client", data: heartbeat, binary: false },
];

/** Large messages: a ring that wraps, stored (incompressible) blocks, fragments, and the 64 KiB limit. */
const LARGE_STEPS: Step[] = [
  { from: "server", data: rows, binary: false },
  { from: "client", data: randomBytes(70_000), binary: true },
  { from: "client", data: rows, binary: false, fragments: 4 },
  { from: "server", data: Buffer.concat([rows, randomBytes(5000), rows]), binary: true, fragments: 2 },
  { from: "client", data: heartbeat, binary: false },
  { from: "server", data: reply, binary: false },
];

interface Config {
  name: string;
  server: PerMessageDeflateOptions;
  client: PerMessageDeflateOptions;
  expectedExtension: Partial<DeflateParams>;
}

const CONFIGS: Config[] = [
  {
    name: "context takeover in both directions",
    server: { threshold: 0 },
    client: { threshold: 0 },
    expectedExtension: { serverNoContextTakeover: false, clientNoContextTakeover: false },
  },
  {
    name: "no context takeover in either direction",
    server: { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
    client: { threshold: 0 },
    expectedExtension: { serverNoContextTakeover: true, clientNoContextTakeover: true },
  },
  {
    name: "small windows (server 9 bits, client 8 bits)",
    server: { threshold: 0, serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
    client: { threshold: 0 },
    expectedExtension: { serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
  },
];

function expectedEvents(steps: readonly Step[], from: "client" | "server", maxMessageBytes = BIG): string[] {
  const events: SinkEvent[] = steps
    .filter((s) => s.from === from)
    .map((s) => ({ kind: "message", binary: s.binary, data: s.data.subarray(0, maxMessageBytes) }));
  events.push({ kind: "close", code: 1000 });
  return summarize(events);
}

interface Direction {
  name: string;
  fromClient: boolean;
  frames: Buffer;
  expected: string[];
}

function directions(capture: Capture, steps: readonly Step[]): Direction[] {
  return [
    { name: "client→server", fromClient: true, frames: capture.c2s.subarray(endOfHttpHead(capture.c2s)), expected: expectedEvents(steps, "client") },
    { name: "server→client", fromClient: false, frames: capture.s2c.subarray(endOfHttpHead(capture.s2c)), expected: expectedEvents(steps, "server") },
  ];
}

function read(capture: Capture, dir: Direction, chunks: readonly Buffer[], want?: WantPolicy, maxMessageBytes = BIG, inflateSliceBytes?: number): string[] {
  const deflate = parseDeflateExtension(capture.extensions);
  return summarize(readAll(chunks, { fromClient: dir.fromClient, deflate, maxMessageBytes, inflateSliceBytes }, want));
}

describe.each(CONFIGS)("FrameReader with permessage-deflate from a real ws pair: $name", (config) => {
  let small: Capture;
  let large: Capture;
  beforeAll(async () => {
    small = await captureConversation(config.server, config.client, SMALL_STEPS);
    large = await captureConversation(config.server, config.client, LARGE_STEPS);
  });

  it("negotiated what the configuration asks for, and ws compressed the first message each way", () => {
    expect(parseDeflateExtension(small.extensions)).toMatchObject(config.expectedExtension);
    for (const dir of directions(small, SMALL_STEPS)) expect(dir.frames[0], dir.name).toBe(0xc1); // FIN, RSV1, text
  });

  it("inflates small messages in both directions split at every byte offset", () => {
    for (const dir of directions(small, SMALL_STEPS)) {
      for (let at = 0; at <= dir.frames.length; at++) {
        expect(read(small, dir, splitAt(dir.frames, [at])), `${dir.name} split at ${at}`).toEqual(dir.expected);
      }
    }
  });

  it("inflates large messages in both directions in random chunks, leaving the chunks untouched", () => {
    for (const dir of directions(large, LARGE_STEPS)) {
      expect(read(large, dir, [dir.frames]), dir.name).toEqual(dir.expected);
      fc.assert(
        fc.property(fc.uniqueArray(fc.nat({ max: dir.frames.length }), { maxLength: 30 }), (cuts) => {
          const chunks = splitAt(Buffer.from(dir.frames), [...cuts].sort((a, b) => a - b));
          const copies = chunks.map((c) => Buffer.from(c));
          expect(read(large, dir, chunks)).toEqual(dir.expected);
          chunks.forEach((chunk, i) => expect(chunk.equals(copies[i]!)).toBe(true));
        }),
        { numRuns: 15 },
      );
    }
  });

  it("skips a message the sink declines and still inflates every later message", () => {
    for (const dir of directions(large, LARGE_STEPS)) {
      const declineFirst: WantPolicy = (index) => index !== 0;
      const deflate = parseDeflateExtension(large.extensions);
      const chunks = splitAt(dir.frames, [777, 5000, 40_000]);
      const [first, ...rest] = readAll(chunks, { fromClient: dir.fromClient, deflate, maxMessageBytes: BIG }, declineFirst);
      expect(summarize(rest), dir.name).toEqual(dir.expected.slice(1));
      const original = LARGE_STEPS.find((step) => step.from === (dir.fromClient ? "client" : "server"))!.data;
      expect(first?.kind).toBe("message");
      const delivered = first?.kind === "message" ? first.data : Buffer.alloc(0);
      expect(delivered.length).toBeGreaterThan(0);
      expect(delivered.length).toBeLessThan(original.length);
      expect(original.subarray(0, delivered.length).equals(delivered)).toBe(true);
    }
  });

  it("gives the same messages when it yields after every slice of inflated bytes, whatever the split", () => {
    for (const dir of directions(large, LARGE_STEPS)) {
      for (const slice of [1, 100, 5000]) {
        expect(read(large, dir, [dir.frames], undefined, BIG, slice), `${dir.name} slice ${slice}`).toEqual(dir.expected);
        const chunks = splitAt(dir.frames, [1, 333, 4097, 20_000, 20_001]);
        expect(read(large, dir, chunks, undefined, BIG, slice), `${dir.name} slice ${slice}, split`).toEqual(dir.expected);
      }
    }
    for (const dir of directions(small, SMALL_STEPS)) {
      for (let at = 0; at <= dir.frames.length; at++) {
        expect(read(small, dir, splitAt(dir.frames, [at]), undefined, BIG, 1), `${dir.name} split at ${at}`).toEqual(dir.expected);
      }
    }
  });

  it("stops at maxMessageBytes but keeps the window for the next messages", () => {
    for (const dir of directions(large, LARGE_STEPS)) {
      const expected = expectedEvents(LARGE_STEPS, dir.fromClient ? "client" : "server", 1000);
      expect(read(large, dir, [dir.frames], undefined, 1000), dir.name).toEqual(expected);
    }
  });
});

describe("FrameReader with permessage-deflate limits and errors", () => {
  const deflate: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

  it("inflates a decompression bomb in window-sized pieces, delivers only maxMessageBytes of it, and reads on", () => {
    // 64 MiB of zeros (~65 KB compressed), then a small message on the same connection.
    const bombSize = 64 * 1024 * 1024;
    const bomb = deflateRawSync(Buffer.alloc(bombSize), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
    const after = deflateRawSync(heartbeat, { finishFlush: constants.Z_SYNC_FLUSH });
    const frames = Buffer.concat([
      wsFrame(bomb.subarray(0, bomb.length - 4), { fin: true, opcode: 2, mask: true, rsv1: true }),
      wsFrame(after.subarray(0, after.length - 4), { fin: true, opcode: 1, mask: true, rsv1: true }),
    ]);
    const pieces: number[] = [];
    const messages: number[] = [];
    const errors: string[] = [];
    let bytes = 0;
    const sink: MessageSink = {
      onMessageStart: () => void (bytes = 0),
      onMessageData: (_data, start, end) => {
        pieces.push(end - start);
        bytes += end - start;
        return true;
      },
      onMessageEnd: () => void messages.push(bytes),
      onClose: () => {},
      onError: (err) => void errors.push(err.code),
    };
    const reader = new FrameReader(sink, { fromClient: true, deflate });
    const memory = (): number => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const before = memory();
    reader.push(frames);
    expect(errors).toEqual([]);
    expect(messages).toEqual([64 * 1024, heartbeat.length]);
    expect(Math.max(...pieces)).toBeLessThanOrEqual(32 * 1024);
    expect(memory() - before).toBeLessThan(16 * 1024 * 1024); // nothing like 64 MiB was held
  });

  const CAP = 1024 * 1024;

  /** A compressed, masked client frame of `data` (its own context: a fresh deflate stream). */
  function compressedFrame(data: Buffer, opcode = 1): Buffer {
    const z = deflateRawSync(data, { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
    return wsFrame(z.subarray(0, z.length - 4), { fin: true, opcode, mask: true, rsv1: true });
  }

  /** A sink that records message sizes and first bytes, and the uninspected reports in between. */
  function recorder() {
    const log: string[] = [];
    let bytes = 0;
    let head = "";
    const sink: MessageSink = {
      onMessageStart: () => void ((bytes = 0), (head = "")),
      onMessageData: (data, start, end) => {
        if (bytes === 0) head = data.subarray(start, Math.min(end, start + 12)).toString("latin1").replace(/\0/g, "");
        bytes += end - start;
        return true;
      },
      // Past the cap, at most one more ring (32 KiB) of output was made.
      onMessageEnd: () => void log.push(`message ${bytes > CAP && bytes <= CAP + 32 * 1024 ? "cap" : bytes}${head === "" ? "" : ` ${head}`}`),
      onClose: () => {},
      onError: (err) => void log.push(`error ${err.code}`),
    };
    return { sink, log, uninspected: (lost: boolean) => void log.push(`uninspected lost=${lost}`) };
  }

  it("inflates at most a slice per call: push and resume return false until the chunk is parsed, with the same result", () => {
    const frames = Buffer.concat([compressedFrame(Buffer.alloc(8 * 1024 * 1024), 2), compressedFrame(heartbeat)]);
    const r = recorder();
    const slice = 256 * 1024;
    let delivered = 0;
    let most = 0;
    const sink: MessageSink = { ...r.sink, onMessageData: (_data, start, end) => ((delivered += end - start), true) };
    const reader = new FrameReader(sink, { fromClient: true, deflate, maxMessageBytes: Infinity, inflateSliceBytes: slice });
    let calls = 1;
    let done = reader.push(frames);
    expect(reader.busy).toBe(!done);
    while (!done) {
      most = Math.max(most, delivered);
      delivered = 0;
      done = reader.resume();
      calls++;
    }
    expect(reader.busy).toBe(false);
    expect(r.log).toEqual(["message 0", "message 0"]); // the bytes went to `delivered` instead
    expect(calls).toBeGreaterThanOrEqual(32);
    expect(most).toBeLessThanOrEqual(slice + 32 * 1024);
    expect(reader.offset).toBe(frames.length);
  });

  it("with context takeover, gives up the window past maxInflatedMessageBytes: that and every later compressed message are reported uninspected, uncompressed ones still read", () => {
    const r = recorder();
    const reader = new FrameReader(r.sink, { fromClient: true, deflate, maxMessageBytes: Infinity, maxInflatedMessageBytes: CAP, onUninspected: r.uninspected });
    const plain = wsFrame(Buffer.from("plain text"), { fin: true, opcode: 1, mask: true, rsv1: false });
    const bomb = compressedFrame(Buffer.alloc(8 * 1024 * 1024));
    for (const at of [1, 1000, bomb.length - 1]) {
      r.log.length = 0;
      const fresh = new FrameReader(r.sink, { fromClient: true, deflate, maxMessageBytes: Infinity, maxInflatedMessageBytes: CAP, onUninspected: r.uninspected });
      for (const chunk of splitAt(Buffer.concat([bomb, plain]), [at])) fresh.push(chunk);
      expect(r.log, `split at ${at}`).toEqual(["uninspected lost=true", "message cap", "message 10 plain text"]);
    }
    r.log.length = 0;
    reader.push(Buffer.concat([compressedFrame(heartbeat), bomb, compressedFrame(heartbeat), plain]));
    expect(r.log).toEqual([
      `message ${heartbeat.length} [null,"6","p`,
      "uninspected lost=true",
      "message cap",
      "uninspected lost=true",
      "message 0",
      "message 10 plain text",
    ]);
  });

  it("without context takeover, skips the rest of a message past maxInflatedMessageBytes and reads the next one afresh", () => {
    const r = recorder();
    const fresh: DeflateParams = { ...deflate, clientNoContextTakeover: true };
    const reader = new FrameReader(r.sink, { fromClient: true, deflate: fresh, maxMessageBytes: Infinity, maxInflatedMessageBytes: CAP, onUninspected: r.uninspected });
    reader.push(Buffer.concat([compressedFrame(Buffer.alloc(8 * 1024 * 1024)), compressedFrame(heartbeat)]));
    expect(r.log).toEqual(["uninspected lost=false", "message cap", `message ${heartbeat.length} [null,"6","p`]);
  });

  it("reports WS_ERR_INVALID_DEFLATE_DATA for a payload that is not DEFLATE", () => {
    const frame = wsFrame(Buffer.from([0xff, 0xff, 0xff]), { fin: true, opcode: 1, mask: true, rsv1: true });
    expect(summarize(readAll([frame], { fromClient: true, deflate }))).toEqual(["error:WS_ERR_INVALID_DEFLATE_DATA"]);
  });

  it("reports RSV1 on a continuation frame", () => {
    const first = wsFrame(Buffer.from([0x02, 0x00]), { fin: false, opcode: 1, mask: false, rsv1: true });
    const next = wsFrame(Buffer.from([0x02, 0x00]), { fin: true, opcode: 0, mask: false, rsv1: true });
    expect(summarize(readAll([first, next], { fromClient: false, deflate }))).toEqual(["error:WS_ERR_UNEXPECTED_RSV_1"]);
  });
});
