import { constants, deflateRawSync, inflateRawSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Inflater } from "../../../../sidecar/ws/inflater.js";

/** Inflates `compressed` fed in the given chunk sizes; returns the output or the error. */
function inflateChunked(inflater: Inflater, compressed: Buffer, cuts: readonly number[]): { out: Buffer; error: string | null } {
  const pieces: Buffer[] = [];
  let start = 0;
  for (const end of [...cuts, compressed.length]) {
    let pos = start;
    for (;;) {
      pos = inflater.write(compressed, pos, end);
      const full = inflater.full;
      pieces.push(Buffer.from(inflater.ring.subarray(inflater.outStart, inflater.outEnd)));
      inflater.release();
      if (inflater.error !== null) return { out: Buffer.concat(pieces), error: inflater.error };
      if (pos === end && !full) break;
    }
    start = end;
  }
  return { out: Buffer.concat(pieces), error: null };
}

const STRATEGIES = [constants.Z_DEFAULT_STRATEGY, constants.Z_FILTERED, constants.Z_HUFFMAN_ONLY, constants.Z_RLE, constants.Z_FIXED];

/** Data that compresses in interesting ways: runs, repeats at all distances, and noise. */
const compressibleData = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.record({ byte: fc.integer({ min: 0, max: 255 }), count: fc.integer({ min: 1, max: 2000 }) }).map(({ byte, count }) => new Uint8Array(count).fill(byte)),
      fc.constantFrom("phx_join", '{"topic":"room:lobby","event":"phx_reply"}', "[null,\"6\",\"phoenix\",\"heartbeat\",{}]").map((s) => new TextEncoder().encode(s.repeat(7))),
    ),
    { maxLength: 40 },
  )
  .map((parts) => Buffer.concat(parts));

function cutsFor(length: number, seed: readonly number[]): number[] {
  return [...new Set(seed.map((s) => s % (length + 1)))].sort((a, b) => a - b);
}

describe("Inflater", () => {
  it("inflates whatever zlib deflates, at any level, strategy, window and chunking", () => {
    fc.assert(
      fc.property(
        compressibleData,
        fc.integer({ min: 0, max: 9 }),
        fc.constantFrom(...STRATEGIES),
        fc.integer({ min: 9, max: 15 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (data, level, strategy, windowBits, seed) => {
          const compressed = deflateRawSync(data, { level, strategy, windowBits });
          const result = inflateChunked(new Inflater(windowBits), compressed, cutsFor(compressed.length, seed));
          expect(result.error).toBeNull();
          expect(result.out.equals(data)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("inflates a stream fed one byte at a time", () => {
    const data = Buffer.from(JSON.stringify({ rows: Array.from({ length: 400 }, (_, i) => ({ i, topic: `room:${i % 7}` })) }));
    for (const level of [1, 6, 9]) {
      const compressed = deflateRawSync(data, { level });
      const cuts = Array.from({ length: compressed.length }, (_, i) => i);
      expect(inflateChunked(new Inflater(15), compressed, cuts).out.equals(data)).toBe(true);
    }
  });

  it("keeps its window across messages ended by a sync flush, and forgets it after reset", () => {
    const first = Buffer.from("the quick brown fox jumps over the lazy dog ".repeat(20));
    const both = Buffer.concat([first, first]);
    // One deflate stream flushed after each message, the way permessage-deflate with context takeover sends it.
    const stream = deflateRawSync(both, { finishFlush: constants.Z_SYNC_FLUSH });
    const inflater = new Inflater(15);
    const whole = inflateChunked(inflater, stream, []);
    expect(whole.error).toBeNull();
    expect(whole.out.equals(both)).toBe(true);

    const second = deflateRawSync(first, { finishFlush: constants.Z_SYNC_FLUSH });
    inflater.endMessage(true);
    expect(inflateChunked(inflater, second, []).out.equals(first)).toBe(true);
  });

  it("delivers output larger than its ring in ring-sized pieces", () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 0x61); // a small decompression bomb
    const compressed = deflateRawSync(data, { level: 9 });
    const inflater = new Inflater(15);
    let largest = 0;
    let total = 0;
    let pos = 0;
    for (;;) {
      pos = inflater.write(compressed, pos, compressed.length);
      const full = inflater.full;
      largest = Math.max(largest, inflater.outEnd - inflater.outStart);
      total += inflater.outEnd - inflater.outStart;
      inflater.release();
      if (pos === compressed.length && !full) break;
    }
    expect(total).toBe(data.length);
    expect(largest).toBeLessThanOrEqual(inflater.ring.length);
    expect(inflater.ring.length).toBe(32 * 1024);
  });

  it("accepts a final block and ignores bytes after it", () => {
    const data = Buffer.from("final block then garbage");
    const compressed = Buffer.concat([deflateRawSync(data), Buffer.from([0x00, 0x00, 0xff, 0xff, 0x13])]);
    const result = inflateChunked(new Inflater(15), compressed, [3]);
    expect(result.error).toBeNull();
    expect(result.out.equals(data)).toBe(true);
  });

  it.each([
    ["a reserved block type", Buffer.from([0x07]), "invalid block type"],
    ["stored lengths that do not match", Buffer.from([0x00, 0x05, 0x00, 0x00, 0x00]), "invalid stored block lengths"],
    ["a distance before the start of the output", Buffer.from([0x03, 0x02, 0x00, 0x00]), "invalid distance too far back"],
  ])("reports %s", (_name, compressed, error) => {
    expect(inflateChunked(new Inflater(15), compressed, []).error).toBe(error);
  });

  it("agrees with zlib on corrupted streams: same output when zlib succeeds, same error when it fails", () => {
    fc.assert(
      fc.property(
        compressibleData,
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom(...STRATEGIES),
        fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (data, level, strategy, flips, truncate) => {
          const compressed = Buffer.from(deflateRawSync(data, { level, strategy }));
          for (const { at, xor } of flips) compressed[at % compressed.length]! ^= xor;
          const input = compressed.subarray(0, compressed.length - (truncate % 3));
          let expected: { out: Buffer | null; error: string | null };
          try {
            expected = { out: inflateRawSync(input, { finishFlush: constants.Z_SYNC_FLUSH }), error: null };
          } catch (err) {
            expected = { out: null, error: (err as Error).message };
          }
          const actual = inflateChunked(new Inflater(15), input, [input.length >> 1]);
          // zlib reads an empty code-length code as "every length is 0" and then misses the
          // end-of-block code; this decoder rejects the empty code itself. Either way: an error.
          const sameFailure =
            actual.error === "invalid code lengths set" && expected.error === "invalid code -- missing end-of-block";
          if (!sameFailure) expect(actual.error).toBe(expected.error);
          if (expected.out !== null) expect(actual.out.equals(expected.out)).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("never throws and never outgrows its ring on random input", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 5 }), (bytes, seed) => {
        const input = Buffer.from(bytes);
        const inflater = new Inflater(10);
        const result = inflateChunked(inflater, input, cutsFor(input.length, seed));
        expect(inflater.ring.length).toBe(4096);
        expect(result.out.length).toBeLessThanOrEqual(input.length * 1032 + 258);
      }),
      { numRuns: 500 },
    );
  });
});
