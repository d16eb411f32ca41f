// A synchronous, incremental raw-DEFLATE decoder (RFC 1951) with bounded memory, for
// permessage-deflate (RFC 7692) in the tap.
//
// Why not node:zlib or a library:
// - The tap must emit both directions' events in wire order, so inflation has to finish inside
//   FrameReader.push(). node:zlib's streams are asynchronous; its only synchronous API
//   (inflateRawSync) is one-shot: it cannot keep an LZ77 window across calls without buffering
//   each whole message and re-seeding a 32 KiB dictionary, and its maxOutputLength throws away the
//   context when a message is big. Driving the stream's internal handle (`_handle.writeSync`, what
//   inflateRawSync uses underneath) would work but is undocumented and may change in any release.
// - fflate's streaming Inflate is synchronous, but each push() returns that push's whole output as
//   one new array (a 64 KiB chunk of a decompression bomb becomes ~64 MiB at once) and copies its
//   32 KiB window into another new array: allocation per chunk, and no bound but the input size.
// This decoder writes its output into the LZ77 window itself, a ring of 2^windowBits bytes (at
// least 4 KiB), and stops whenever the ring is full so the caller can deliver views of it: memory is
// the ring plus ~7 KiB of tables whatever the input, nothing is allocated per chunk, and output is
// copied only by the LZ77 copies themselves. About 500 lines, checked against node:zlib. Tests check it against node:zlib over random data, levels,
// strategies, window sizes and chunkings.

import { BitReader } from "./bit-reader.js";
import {
  buildTable,
  CODELEN_ORDER,
  CODELEN_ROOT_BITS,
  CODELEN_TABLE_SIZE,
  DIST_BASE,
  DIST_EXTRA,
  DIST_ROOT_BITS,
  DIST_TABLE_SIZE,
  entryFor,
  FIXED_DIST_ROOT_BITS,
  FIXED_DIST_TABLE,
  FIXED_LITLEN_ROOT_BITS,
  FIXED_LITLEN_TABLE,
  isInvalid,
  LENGTH_BASE,
  LENGTH_EXTRA,
  LITLEN_ROOT_BITS,
  LITLEN_TABLE_SIZE,
} from "./huffman.js";

// Decoder states: each names what the next input bits are.
const BLOCK_HEADER = 0;
const STORED_LENGTHS = 1;
const STORED_COPY = 2;
const TABLE_SIZES = 3;
const CODELEN_LENGTHS = 4;
const CODE_LENGTHS = 5;
const LITLEN = 6;
const LENGTH_EXTRA_BITS = 7;
const DISTANCE = 8;
const DISTANCE_EXTRA_BITS = 9;
const MATCH_COPY = 10;
const STREAM_END = 11;
const BAD = 12;

/** Smallest ring: a window below 4 KiB would only mean more, smaller deliveries. */
const MIN_RING_BITS = 12;
const MAX_MATCH = 258;
/** Input bytes one literal/length/distance sequence can need at most (15+5+15+13 bits, byte-refilled). */
const MAX_SEQUENCE_BYTES = 8;
const MAX_LITLEN_CODES = 286;
const MAX_DIST_CODES = 30;
const NO_LENGTHS = new Uint8Array(0);
const NO_TABLE = new Uint32Array(0);

/**
 * Incremental raw-DEFLATE decoder whose output ring is also its LZ77 window. Feed compressed bytes
 * with {@link write}; after each call, the bytes in `ring[outStart, outEnd)` are new output, valid
 * until {@link release} is called (which must happen before the next write).
 */
export class Inflater {
  /** Output ring and LZ77 history; read new output from `outStart` to `outEnd`. */
  readonly ring: Buffer;
  /** First byte of output not yet released. */
  outStart = 0;
  /** One past the last byte of output written. */
  outEnd = 0;
  /** Why the stream is invalid, once it is (the decoder then ignores all input). */
  error: string | null = null;

  private wrapped = false;
  private state = BLOCK_HEADER;
  private lastBlock = false;
  private readonly bits = new BitReader();
  private length = 0;
  private distance = 0;
  private symbol = 0;
  private litlenTable = FIXED_LITLEN_TABLE;
  private litlenRootBits = FIXED_LITLEN_ROOT_BITS;
  private distTable = FIXED_DIST_TABLE;
  private distRootBits = FIXED_DIST_ROOT_BITS;
  private litlenCount = 0;
  private distCount = 0;
  private codelenCount = 0;
  private have = 0;
  // Dynamic-block tables, allocated on the first dynamic block: tiny messages often use fixed codes.
  private lengths = NO_LENGTHS;
  private codelenTable = NO_TABLE;
  private dynLitlenTable = NO_TABLE;
  private dynDistTable = NO_TABLE;

  /**
   * @param windowBits log2 of the peer's LZ77 window (8..15). The ring is never smaller than 4 KiB,
   * and distances are checked against the ring, not the negotiated window: an observer accepts a
   * peer that overshoots its window (zlib itself silently turns a raw 8-bit window into 9 bits).
   */
  constructor(windowBits: number) {
    this.ring = Buffer.alloc(1 << Math.max(windowBits, MIN_RING_BITS));
  }

  /** True when the ring is full: release the output, then call write again even with no new input. */
  get full(): boolean {
    return this.outEnd === this.ring.length;
  }

  /**
   * Decodes `input[start, end)` until it is used up, the ring is full, or the data is invalid.
   * @returns the input position reached (equal to `end` unless the ring filled first)
   */
  write(input: Buffer, start: number, end: number): number {
    this.bits.attach(input, start, end);
    let more = true;
    while (more) more = this.step();
    return this.bits.detach(); // do not keep the caller's chunk alive
  }

  /** Marks the output delivered; wraps the ring when it is full. */
  release(): void {
    if (this.outEnd === this.ring.length) {
      this.outEnd = 0;
      this.wrapped = true;
    }
    this.outStart = this.outEnd;
  }

  /**
   * Ends a message (after its `00 00 ff ff` tail was written). A peer may end a message with a final
   * block instead of a flush; the next message then starts a new block. `fresh` forgets the window
   * (no_context_takeover).
   */
  endMessage(fresh: boolean): void {
    if (this.state === STREAM_END) {
      this.state = BLOCK_HEADER;
      this.lastBlock = false;
      this.bits.clear();
    }
    if (fresh && this.state !== BAD) this.reset();
  }

  /** Starts a new, empty compression context (keeps the ring's memory). */
  reset(): void {
    this.state = BLOCK_HEADER;
    this.lastBlock = false;
    this.bits.clear();
    this.outStart = 0;
    this.outEnd = 0;
    this.wrapped = false;
    this.error = null;
  }

  private step(): boolean {
    switch (this.state) {
      case BLOCK_HEADER:
        return this.readBlockHeader();
      case STORED_LENGTHS:
        return this.readStoredLengths();
      case STORED_COPY:
        return this.copyStored();
      case TABLE_SIZES:
        return this.readTableSizes();
      case CODELEN_LENGTHS:
        return this.readCodelenLengths();
      case CODE_LENGTHS:
        return this.readCodeLengths();
      case LITLEN:
        return this.readLitlen();
      case LENGTH_EXTRA_BITS:
        return this.readLengthExtra();
      case DISTANCE:
        return this.readDistance();
      case DISTANCE_EXTRA_BITS:
        return this.readDistanceExtra();
      case MATCH_COPY:
        return this.copyMatch();
      case STREAM_END:
        this.bits.pos = this.bits.end; // bytes after the final block belong to no block
        return false;
      default:
        return false;
    }
  }

  private readBlockHeader(): boolean {
    if (this.lastBlock) {
      this.state = STREAM_END;
      return true;
    }
    if (!this.bits.need(3)) return false;
    const header = this.bits.take(3);
    this.lastBlock = (header & 1) === 1;
    switch (header >>> 1) {
      case 0:
        this.bits.alignToByte(); // stored blocks start on a byte boundary
        this.state = STORED_LENGTHS;
        return true;
      case 1:
        this.litlenTable = FIXED_LITLEN_TABLE;
        this.litlenRootBits = FIXED_LITLEN_ROOT_BITS;
        this.distTable = FIXED_DIST_TABLE;
        this.distRootBits = FIXED_DIST_ROOT_BITS;
        this.state = LITLEN;
        return true;
      case 2:
        this.state = TABLE_SIZES;
        return true;
      default:
        return this.fail("invalid block type");
    }
  }

  private readStoredLengths(): boolean {
    // Byte-aligned here, so 32 bits is exactly LEN and NLEN with nothing left over.
    const bits = this.bits;
    if (!bits.need(32)) return false;
    const length = bits.buf & 0xffff;
    const complement = (bits.buf >>> 16) & 0xffff;
    bits.clear();
    if (length !== (~complement & 0xffff)) return this.fail("invalid stored block lengths");
    this.length = length;
    this.state = STORED_COPY;
    return true;
  }

  private copyStored(): boolean {
    if (this.length === 0) {
      this.state = BLOCK_HEADER;
      return true;
    }
    const bits = this.bits;
    const n = Math.min(this.length, bits.end - bits.pos, this.ring.length - this.outEnd);
    if (n === 0) return false;
    bits.input.copy(this.ring, this.outEnd, bits.pos, bits.pos + n);
    bits.pos += n;
    this.outEnd += n;
    this.length -= n;
    return true;
  }

  private readTableSizes(): boolean {
    const bits = this.bits;
    if (!bits.need(14)) return false;
    this.litlenCount = bits.take(5) + 257;
    this.distCount = bits.take(5) + 1;
    this.codelenCount = bits.take(4) + 4;
    if (this.litlenCount > MAX_LITLEN_CODES || this.distCount > MAX_DIST_CODES) {
      return this.fail("too many length or distance symbols");
    }
    if (this.lengths === NO_LENGTHS) this.allocateDynamicTables();
    this.have = 0;
    this.state = CODELEN_LENGTHS;
    return true;
  }

  private allocateDynamicTables(): void {
    this.lengths = new Uint8Array(MAX_LITLEN_CODES + MAX_DIST_CODES);
    this.codelenTable = new Uint32Array(CODELEN_TABLE_SIZE);
    this.dynLitlenTable = new Uint32Array(LITLEN_TABLE_SIZE);
    this.dynDistTable = new Uint32Array(DIST_TABLE_SIZE);
  }

  private readCodelenLengths(): boolean {
    while (this.have < this.codelenCount) {
      if (!this.bits.need(3)) return false;
      this.lengths[CODELEN_ORDER[this.have++]!] = this.bits.take(3);
    }
    while (this.have < CODELEN_ORDER.length) this.lengths[CODELEN_ORDER[this.have++]!] = 0;
    if (buildTable(this.lengths, 0, 19, this.codelenTable, CODELEN_ROOT_BITS, false) < 0) {
      return this.fail("invalid code lengths set");
    }
    this.have = 0;
    this.state = CODE_LENGTHS;
    return true;
  }

  private readCodeLengths(): boolean {
    const bits = this.bits;
    const total = this.litlenCount + this.distCount;
    while (this.have < total) {
      const entry = bits.lookup(this.codelenTable, CODELEN_ROOT_BITS);
      if (entry < 0) return false;
      const codeBits = entry & 15;
      const symbol = entry >>> 8;
      if (symbol < 16) {
        bits.take(codeBits);
        this.lengths[this.have++] = symbol;
        continue;
      }
      // A repeat code is taken only with its extra bits, so running out of input leaves it unread.
      const extraBits = symbol === 16 ? 2 : symbol === 17 ? 3 : 7;
      if (!bits.need(codeBits + extraBits)) return false;
      bits.take(codeBits);
      const repeat = (symbol === 18 ? 11 : 3) + bits.take(extraBits);
      if (symbol === 16 && this.have === 0) return this.fail("invalid bit length repeat");
      if (this.have + repeat > total) return this.fail("invalid bit length repeat");
      const value = symbol === 16 ? this.lengths[this.have - 1]! : 0;
      this.lengths.fill(value, this.have, this.have + repeat);
      this.have += repeat;
    }
    return this.buildDynamicTables();
  }

  private buildDynamicTables(): boolean {
    if (this.lengths[256] === 0) return this.fail("invalid code -- missing end-of-block");
    const litlenCount = this.litlenCount;
    if (buildTable(this.lengths, 0, litlenCount, this.dynLitlenTable, LITLEN_ROOT_BITS, true) < 0) {
      return this.fail("invalid literal/lengths set");
    }
    if (buildTable(this.lengths, litlenCount, this.distCount, this.dynDistTable, DIST_ROOT_BITS, true) < 0) {
      return this.fail("invalid distances set");
    }
    this.litlenTable = this.dynLitlenTable;
    this.litlenRootBits = LITLEN_ROOT_BITS;
    this.distTable = this.dynDistTable;
    this.distRootBits = DIST_ROOT_BITS;
    this.state = LITLEN;
    return true;
  }

  private readLitlen(): boolean {
    const bits = this.bits;
    if (bits.end - bits.pos >= MAX_SEQUENCE_BYTES && this.ring.length - this.outEnd >= MAX_MATCH) {
      this.decodeFast();
      return this.state !== BAD;
    }
    const entry = bits.lookup(this.litlenTable, this.litlenRootBits);
    if (entry < 0) return false;
    const symbol = entry >>> 8;
    if (isInvalid(entry) || symbol > 285) return this.fail("invalid literal/length code");
    if (symbol < 256) {
      if (this.outEnd === this.ring.length) return false;
      bits.take(entry & 15);
      this.ring[this.outEnd++] = symbol;
      return true;
    }
    bits.take(entry & 15);
    if (symbol === 256) {
      this.state = BLOCK_HEADER;
      return true;
    }
    this.symbol = symbol - 257;
    this.state = LENGTH_EXTRA_BITS;
    return true;
  }

  private readLengthExtra(): boolean {
    const extraBits = LENGTH_EXTRA[this.symbol]!;
    if (!this.bits.need(extraBits)) return false;
    this.length = LENGTH_BASE[this.symbol]! + this.bits.take(extraBits);
    this.state = DISTANCE;
    return true;
  }

  private readDistance(): boolean {
    const entry = this.bits.lookup(this.distTable, this.distRootBits);
    if (entry < 0) return false;
    const symbol = entry >>> 8;
    if (isInvalid(entry) || symbol > 29) return this.fail("invalid distance code");
    this.bits.take(entry & 15);
    this.symbol = symbol;
    this.state = DISTANCE_EXTRA_BITS;
    return true;
  }

  private readDistanceExtra(): boolean {
    const extraBits = DIST_EXTRA[this.symbol]!;
    if (!this.bits.need(extraBits)) return false;
    this.distance = DIST_BASE[this.symbol]! + this.bits.take(extraBits);
    if (this.distance > (this.wrapped ? this.ring.length : this.outEnd)) return this.fail("invalid distance too far back");
    this.state = MATCH_COPY;
    return true;
  }

  private copyMatch(): boolean {
    const ring = this.ring;
    const n = Math.min(this.length, ring.length - this.outEnd);
    let from = this.outEnd - this.distance;
    if (from < 0) from += ring.length;
    let to = this.outEnd;
    for (let i = 0; i < n; i++) {
      ring[to++] = ring[from++]!;
      if (from === ring.length) from = 0;
    }
    this.outEnd = to;
    this.length -= n;
    if (this.length > 0) return false; // ring full: the caller delivers, then we go on
    this.state = LITLEN;
    return true;
  }

  /**
   * The hot loop (like zlib's inflate_fast): while a whole sequence's input and a longest match fit,
   * decode without per-step state saves or bounds checks. Leaves LITLEN only at a block end or error.
   */
  private decodeFast(): void {
    const ring = this.ring;
    const size = ring.length;
    const bits = this.bits;
    const input = bits.input;
    const last = bits.end - MAX_SEQUENCE_BYTES;
    const litlenTable = this.litlenTable;
    const litlenRoot = this.litlenRootBits;
    const distTable = this.distTable;
    const distRoot = this.distRootBits;
    let bitBuf = bits.buf;
    let bitCount = bits.count;
    let pos = bits.pos;
    let out = this.outEnd;
    while (pos <= last && size - out >= MAX_MATCH) {
      while (bitCount < 15) {
        bitBuf |= input[pos++]! << bitCount;
        bitCount += 8;
      }
      let entry = entryFor(litlenTable, litlenRoot, bitBuf);
      const symbol = entry >>> 8;
      if (isInvalid(entry) || symbol > 285) {
        this.fail("invalid literal/length code");
        break;
      }
      bitBuf >>>= entry & 15;
      bitCount -= entry & 15;
      if (symbol < 256) {
        ring[out++] = symbol;
        continue;
      }
      if (symbol === 256) {
        this.state = BLOCK_HEADER;
        break;
      }
      const lengthExtra = LENGTH_EXTRA[symbol - 257]!;
      let length = LENGTH_BASE[symbol - 257]!;
      if (lengthExtra > 0) {
        while (bitCount < lengthExtra) {
          bitBuf |= input[pos++]! << bitCount;
          bitCount += 8;
        }
        length += bitBuf & ((1 << lengthExtra) - 1);
        bitBuf >>>= lengthExtra;
        bitCount -= lengthExtra;
      }
      while (bitCount < 15) {
        bitBuf |= input[pos++]! << bitCount;
        bitCount += 8;
      }
      entry = entryFor(distTable, distRoot, bitBuf);
      const distSymbol = entry >>> 8;
      if (isInvalid(entry) || distSymbol > 29) {
        this.fail("invalid distance code");
        break;
      }
      bitBuf >>>= entry & 15;
      bitCount -= entry & 15;
      const distExtra = DIST_EXTRA[distSymbol]!;
      let distance = DIST_BASE[distSymbol]!;
      if (distExtra > 0) {
        while (bitCount < distExtra) {
          bitBuf |= input[pos++]! << bitCount;
          bitCount += 8;
        }
        distance += bitBuf & ((1 << distExtra) - 1);
        bitBuf >>>= distExtra;
        bitCount -= distExtra;
      }
      if (distance > (this.wrapped ? size : out)) {
        this.fail("invalid distance too far back");
        break;
      }
      let from = out - distance;
      if (from < 0) from += size;
      if (from + length > size) {
        for (let i = 0; i < length; i++) {
          ring[out++] = ring[from++]!;
          if (from === size) from = 0;
        }
      } else if (distance >= length && length >= 32) {
        ring.copyWithin(out, from, from + length); // long non-overlapping copy: native memmove wins
        out += length;
      } else {
        const stop = from + length; // forward byte copy: also right for overlapping runs
        while (from < stop) ring[out++] = ring[from++]!;
      }
    }
    bits.buf = bitBuf;
    bits.count = bitCount;
    bits.pos = pos;
    this.outEnd = out;
  }

  private fail(reason: string): false {
    this.error = reason;
    this.state = BAD;
    return false;
  }
}
