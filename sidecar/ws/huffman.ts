// Canonical Huffman decoding tables for DEFLATE (RFC 1951 §3.2.2), used by inflater.ts.
//
// A table is indexed by the next `root` bits of input (DEFLATE packs Huffman codes starting at their
// most significant bit into the least significant end of the bit stream, hence the bit reversal).
// Codes longer than `root` go to a sub-table linked from the root entry, so the common short codes
// cost one lookup and no table needs 2^15 entries: building one per block stays cheap, which matters
// because every small compressed WebSocket message tends to carry its own block.
//
// Entry layout (one uint32): bits 0-3 = code length (symbol) or sub-table index bits (link),
// bits 4-5 = kind, bits 8.. = symbol (symbol) or sub-table start (link).

/** Entry kind: a decoded symbol. */
export const KIND_SYMBOL = 0;
/** Entry kind: a link to a sub-table for codes longer than the root. */
export const KIND_LINK = 1;
/** Entry kind: no code has this prefix (only in the incomplete one-code case, or an empty table). */
export const KIND_INVALID = 2;

/** An entry that is invalid once one bit is known: what the unused half of a one-code table holds. */
const INVALID_ENTRY = (KIND_INVALID << 4) | 1;

/** Index bits of the root tables: zlib's choice, a good trade of build time against sub-table hops. */
export const LITLEN_ROOT_BITS = 9;
export const DIST_ROOT_BITS = 6;
export const CODELEN_ROOT_BITS = 7;

/**
 * Largest tables the builder can produce for 286 literal/length codes (root 9) and 30 distance
 * codes (root 6) with code lengths up to 15: the bounds zlib's enough.c proves (852 and 592).
 */
export const LITLEN_TABLE_SIZE = 852;
export const DIST_TABLE_SIZE = 592;
export const CODELEN_TABLE_SIZE = 1 << CODELEN_ROOT_BITS;

const MAX_CODE_BITS = 15;

/** Length symbol 257 + i: base length and extra bits (RFC 1951 §3.2.5). */
export const LENGTH_BASE = Uint16Array.of(
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
);
export const LENGTH_EXTRA = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0);
/** Distance symbol i: base distance and extra bits. */
export const DIST_BASE = Uint16Array.of(
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
  8193, 12289, 16385, 24577,
);
export const DIST_EXTRA = Uint8Array.of(0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13);
/** Order in which a dynamic block lists the code lengths of the code length alphabet. */
export const CODELEN_ORDER = Uint8Array.of(16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15);

// Builder scratch, shared because building never re-enters and JavaScript runs it on one thread.
const countByLength = new Uint16Array(MAX_CODE_BITS + 1);
const nextCodeByLength = new Uint16Array(MAX_CODE_BITS + 1);
const reversedCode = new Uint16Array(320);
const longestByPrefix = new Uint8Array(1 << LITLEN_ROOT_BITS);
const subStartByPrefix = new Uint16Array(1 << LITLEN_ROOT_BITS);

/**
 * Builds a decoding table from code lengths (0 = symbol unused).
 * @param lengths code length per symbol, read from `offset` for `count` symbols
 * @param allowIncomplete accept the one-code-of-length-1 set RFC 1951 allows for distances
 * @returns entries used, or -1 when the lengths do not describe a valid prefix code
 */
export function buildTable(
  lengths: Uint8Array,
  offset: number,
  count: number,
  table: Uint32Array,
  rootBits: number,
  allowIncomplete: boolean,
): number {
  const maxBits = countLengths(lengths, offset, count);
  const rootSize = 1 << rootBits;
  if (maxBits === 0) {
    // No codes at all: legal for distances when a block has only literals; any lookup fails.
    table.fill(INVALID_ENTRY, 0, rootSize);
    return allowIncomplete ? rootSize : -1;
  }
  let left = 1;
  for (let bits = 1; bits <= MAX_CODE_BITS; bits++) {
    left = left * 2 - countByLength[bits]!;
    if (left < 0) return -1; // over-subscribed
  }
  if (left > 0 && !(allowIncomplete && maxBits === 1)) return -1; // incomplete
  assignCodes(lengths, offset, count);
  table.fill(INVALID_ENTRY, 0, rootSize);
  for (let sym = 0; sym < count; sym++) {
    const bits = lengths[offset + sym]!;
    if (bits === 0 || bits > rootBits) continue;
    const entry = (sym << 8) | bits;
    for (let i = reversedCode[sym]!; i < rootSize; i += 1 << bits) table[i] = entry;
  }
  return maxBits > rootBits ? fillSubTables(lengths, offset, count, table, rootBits) : rootSize;
}

function countLengths(lengths: Uint8Array, offset: number, count: number): number {
  countByLength.fill(0);
  for (let sym = 0; sym < count; sym++) countByLength[lengths[offset + sym]!]!++;
  countByLength[0] = 0;
  let maxBits = MAX_CODE_BITS;
  while (maxBits > 0 && countByLength[maxBits] === 0) maxBits--;
  return maxBits;
}

/** Canonical codes (RFC 1951 §3.2.2), stored bit-reversed so they index the LSB-first bit buffer. */
function assignCodes(lengths: Uint8Array, offset: number, count: number): void {
  let code = 0;
  for (let bits = 1; bits <= MAX_CODE_BITS; bits++) {
    code = (code + countByLength[bits - 1]!) << 1;
    nextCodeByLength[bits] = code;
  }
  for (let sym = 0; sym < count; sym++) {
    const bits = lengths[offset + sym]!;
    if (bits === 0) continue;
    const canonical = nextCodeByLength[bits]!++;
    let reversed = 0;
    for (let i = 0; i < bits; i++) reversed = (reversed << 1) | ((canonical >>> i) & 1);
    reversedCode[sym] = reversed;
  }
}

/**
 * Each root prefix shared by longer codes gets a sub-table sized for the longest of them; in a
 * complete code those codes cover it exactly. Returns the entries used, or -1 if out of room.
 */
function fillSubTables(lengths: Uint8Array, offset: number, count: number, table: Uint32Array, rootBits: number): number {
  const rootMask = (1 << rootBits) - 1;
  longestByPrefix.fill(0, 0, rootMask + 1);
  for (let sym = 0; sym < count; sym++) {
    const bits = lengths[offset + sym]!;
    const prefix = reversedCode[sym]! & rootMask;
    if (bits > rootBits && bits > longestByPrefix[prefix]!) longestByPrefix[prefix] = bits;
  }
  let used = rootMask + 1;
  for (let prefix = 0; prefix <= rootMask; prefix++) {
    const longest = longestByPrefix[prefix]!;
    if (longest === 0) continue;
    const subBits = longest - rootBits;
    if (used + (1 << subBits) > table.length) return -1;
    table[prefix] = (used << 8) | (KIND_LINK << 4) | subBits;
    subStartByPrefix[prefix] = used;
    used += 1 << subBits;
  }
  for (let sym = 0; sym < count; sym++) {
    const bits = lengths[offset + sym]!;
    if (bits <= rootBits) continue;
    const prefix = reversedCode[sym]! & rootMask;
    const start = subStartByPrefix[prefix]!;
    const subSize = 1 << (longestByPrefix[prefix]! - rootBits);
    const entry = (sym << 8) | bits;
    for (let i = reversedCode[sym]! >>> rootBits; i < subSize; i += 1 << (bits - rootBits)) table[start + i] = entry;
  }
  return used;
}

/**
 * The entry for the code in the low bits of `bits`, following a sub-table link. A sub-table code is
 * longer than the root, so checking the entry's length against the bits buffered also covers the root.
 */
export function entryFor(table: Uint32Array, rootBits: number, bits: number): number {
  const entry = table[bits & ((1 << rootBits) - 1)]!;
  if (((entry >>> 4) & 3) !== KIND_LINK) return entry;
  return table[(entry >>> 8) + ((bits >>> rootBits) & ((1 << (entry & 15)) - 1))]!;
}

/** True for an entry no code leads to. */
export function isInvalid(entry: number): boolean {
  return ((entry >>> 4) & 3) === KIND_INVALID;
}

function buildFixed(count: number, lengthOf: (sym: number) => number, rootBits: number): Uint32Array {
  const lengths = new Uint8Array(count);
  for (let sym = 0; sym < count; sym++) lengths[sym] = lengthOf(sym);
  const table = new Uint32Array(1 << rootBits);
  buildTable(lengths, 0, count, table, rootBits, false);
  return table;
}

/** The fixed literal/length code of block type 1 (RFC 1951 §3.2.6); max length 9, so one level. */
export const FIXED_LITLEN_TABLE = buildFixed(288, (s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8), 9);
/** The fixed distance code: 32 five-bit codes (30 and 31 are invalid when used). */
export const FIXED_DIST_TABLE = buildFixed(32, () => 5, 5);
export const FIXED_LITLEN_ROOT_BITS = 9;
export const FIXED_DIST_ROOT_BITS = 5;
