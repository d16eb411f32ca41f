// LSB-first bit input for the inflater (RFC 1951 §3.1.1): the current byte array plus a few
// buffered bits, which is all the state a decoder needs to stop at any byte and resume later.

import { entryFor } from "./huffman.js";

const EMPTY = Buffer.alloc(0);

/**
 * Bits are pulled a whole byte at a time into `buf`, so `count % 8` is what is left of the current
 * byte (what aligning to a byte boundary drops). Bits above `count` are always zero: a table lookup
 * can then recognise a short code before the bytes a longer one would need have arrived. At most 32
 * bits are ever buffered; the decoder uses `>>>` so the sign bit is harmless.
 */
export class BitReader {
  input: Buffer = EMPTY;
  pos = 0;
  end = 0;
  buf = 0;
  count = 0;

  /** Reads from `input[start, end)` until {@link detach}. */
  attach(input: Buffer, start: number, end: number): void {
    this.input = input;
    this.pos = start;
    this.end = end;
  }

  /** Drops the reference to the caller's bytes; returns the position reached. */
  detach(): number {
    this.input = EMPTY;
    return this.pos;
  }

  /** Ensures `n` (≤ 32) bits are buffered; false when the input ran out first. */
  need(n: number): boolean {
    while (this.count < n) {
      if (this.pos === this.end) return false;
      this.buf |= this.input[this.pos++]! << this.count;
      this.count += 8;
    }
    return true;
  }

  /** Consumes and returns the next `n` (< 32) buffered bits. */
  take(n: number): number {
    const value = this.buf & ((1 << n) - 1);
    this.buf >>>= n;
    this.count -= n;
    return value;
  }

  /** Drops the rest of the current byte. */
  alignToByte(): void {
    this.take(this.count & 7);
  }

  /** Forgets the buffered bits (a new stream starts at the next byte). */
  clear(): void {
    this.buf = 0;
    this.count = 0;
  }

  /**
   * The table entry of the next code, pulling bytes until all its bits are buffered; consumes
   * nothing. -1 when the input ran out first.
   */
  lookup(table: Uint32Array, rootBits: number): number {
    for (;;) {
      const entry = entryFor(table, rootBits, this.buf);
      if (this.count >= (entry & 15)) return entry;
      if (this.pos === this.end) return -1;
      this.buf |= this.input[this.pos++]! << this.count;
      this.count += 8;
    }
  }
}
