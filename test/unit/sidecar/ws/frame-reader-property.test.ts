import { constants, createDeflateRaw, type DeflateRaw } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DeflateParams } from "../../../../sidecar/ws/frame-reader.js";
import { readAll, splitAt, summarize, type SinkEvent } from "./recording-sink.js";
import { wsFrame } from "./ws-internals.js";

const BIG = 1 << 20;

interface MessageSpec {
  binary: boolean;
  data: Uint8Array;
  compress: boolean;
  /** Offsets at which the payload (compressed or not) is cut into fragments. */
  cuts: number[];
  /** A ping or pong after each fragment but the last (undefined: none). */
  controls: Array<{ opcode: 9 | 10; payload: Uint8Array } | undefined>;
  masks: Uint8Array[];
  /** The sink stops wanting this message once it has this many bytes (undefined: wants it all). */
  budget: number | undefined;
}

const payload = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 3, arbitrary: fc.string({ maxLength: 400 }).map((s) => new TextEncoder().encode(s.repeat(3))) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 70_000 }).map((n) => new Uint8Array(n).map((_, i) => (i * 7) % 251 ^ (i >> 9))) },
);

const message: fc.Arbitrary<MessageSpec> = fc.record({
  binary: fc.boolean(),
  data: payload,
  compress: fc.boolean(),
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
  controls: fc.array(fc.option(fc.record({ opcode: fc.constantFrom<9 | 10>(9, 10), payload: fc.uint8Array({ maxLength: 125 }) }), { nil: undefined }), { maxLength: 4 }),
  masks: fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), { minLength: 5, maxLength: 5 }),
  budget: fc.option(fc.nat({ max: 5000 }), { nil: undefined, freq: 3 }),
});

const deflateParams: fc.Arbitrary<DeflateParams | null> = fc.option(
  fc.record({
    serverNoContextTakeover: fc.boolean(),
    clientNoContextTakeover: fc.boolean(),
    serverMaxWindowBits: fc.integer({ min: 8, max: 15 }),
    clientMaxWindowBits: fc.integer({ min: 8, max: 15 }),
  }),
  { nil: null },
);

/** Compresses one message the way permessage-deflate does: sync flush, tail stripped. */
async function compress(deflater: DeflateRaw, out: Buffer[], data: Uint8Array): Promise<Buffer> {
  deflater.write(data);
  await new Promise<void>((resolve) => deflater.flush(constants.Z_SYNC_FLUSH, () => resolve()));
  const flushed = Buffer.concat(out.splice(0));
  return flushed.subarray(0, flushed.length - 4);
}

/** Frames the messages with ws's framer, compressing with one zlib context (or one per message). */
async function encode(messages: readonly MessageSpec[], fromClient: boolean, params: DeflateParams | null, level: number): Promise<Buffer> {
  const noTakeover = params !== null && (fromClient ? params.clientNoContextTakeover : params.serverNoContextTakeover);
  const windowBits = Math.max(9, params === null ? 15 : fromClient ? params.clientMaxWindowBits : params.serverMaxWindowBits);
  let deflater: DeflateRaw | null = null;
  const out: Buffer[] = [];
  const frames: Buffer[] = [];
  for (const m of messages) {
    const compressed = params !== null && m.compress;
    if (compressed && (deflater === null || noTakeover)) {
      deflater?.close();
      deflater = createDeflateRaw({ windowBits, level });
      deflater.on("data", (chunk: Buffer) => out.push(chunk));
    }
    const body = compressed ? await compress(deflater!, out, m.data) : Buffer.from(m.data);
    const cuts = [...new Set(m.cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
    const fragments = splitAt(body, cuts);
    fragments.forEach((fragment, i) => {
      const fin = i === fragments.length - 1;
      const opcode = i > 0 ? 0 : m.binary ? 2 : 1;
      frames.push(wsFrame(fragment, { fin, opcode, mask: fromClient, rsv1: compressed && i === 0, maskKey: Buffer.from(m.masks[i % 5]!) }));
      const control = m.controls[i];
      if (!fin && control !== undefined) {
        frames.push(wsFrame(Buffer.from(control.payload), { fin: true, opcode: control.opcode, mask: fromClient, rsv1: false, maskKey: Buffer.from(m.masks[4]!) }));
      }
    });
  }
  deflater?.close();
  return Buffer.concat(frames);
}

describe("FrameReader properties", () => {
  it("delivers exactly the messages sent, whatever the fragmentation, masks, compression and chunking", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { maxLength: 8 }),
        fc.boolean(),
        deflateParams,
        fc.integer({ min: 1, max: 9 }),
        fc.uniqueArray(fc.nat(), { maxLength: 20 }),
        async (messages, fromClient, params, level, seed) => {
          const bytes = await encode(messages, fromClient, params, level);
          const cuts = [...new Set(seed.map((s) => s % (bytes.length + 1)))].sort((a, b) => a - b);
          const chunks = splitAt(bytes, cuts);
          const copies = chunks.map((c) => Buffer.from(c));
          const events = readAll(chunks, { fromClient, deflate: params, maxMessageBytes: BIG });
          const expected: SinkEvent[] = messages.map((m) => ({ kind: "message", binary: m.binary, data: Buffer.from(m.data) }));
          expect(summarize(events)).toEqual(summarize(expected)); // strings: deep-equal on big Buffers is slow
          chunks.forEach((chunk, i) => expect(chunk.equals(copies[i]!)).toBe(true));
        },
      ),
      { numRuns: 150 },
    );
  });

  it("after a message the sink stops wanting, delivers every later message exactly", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        deflateParams,
        fc.uniqueArray(fc.nat(), { maxLength: 10 }),
        async (messages, fromClient, params, seed) => {
          const bytes = await encode(messages, fromClient, params, 6);
          const cuts = [...new Set(seed.map((s) => s % (bytes.length + 1)))].sort((a, b) => a - b);
          const want = (index: number, delivered: number): boolean => delivered < (messages[index]?.budget ?? Infinity);
          const events = readAll(splitAt(bytes, cuts), { fromClient, deflate: params, maxMessageBytes: BIG }, want);
          expect(events).toHaveLength(messages.length);
          events.forEach((event, i) => {
            const m = messages[i]!;
            const original = Buffer.from(m.data);
            if (event.kind !== "message") throw new Error(`unexpected ${event.kind}`);
            expect(event.binary).toBe(m.binary);
            if (m.budget === undefined) expect(event.data.equals(original)).toBe(true);
            else {
              expect(event.data.length).toBeGreaterThanOrEqual(Math.min(m.budget, original.length));
              expect(original.subarray(0, event.data.length).equals(event.data)).toBe(true);
            }
          });
        },
      ),
      { numRuns: 150 },
    );
  });
});
