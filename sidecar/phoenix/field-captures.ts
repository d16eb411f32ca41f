import { COMPLEX_REF } from "./message.js";

/** No field: a value or key the scanner does not capture. */
export const NONE = -1;
/** Fields captured: join_ref, ref, topic, event (the vsn 2 array positions), the payload and its status. */
const FIELD_COUNT = 6;
/**
 * Longest topic, event or ref read: the join gate's hold limit, since a longer message can
 * be neither held back nor refused. A message with a longer field is relayed undecided.
 */
export const MAX_FIELD_BYTES = 64 * 1024;
const INITIAL_FIELD_BYTES = 256;
/** A pooled scanner keeps capture buffers up to this size between messages. */
const KEPT_FIELD_BYTES = 4096;
/** Field kinds. */
const ABSENT = 0;
export const STRING = 1;
/** A number, true, false or null. */
export const LITERAL = 2;
/** An array or object. */
export const COMPLEX = 3;
/** text() of a string JSON would reject (a bad escape). */
export const INVALID = "\u0000invalid";
const BACKSLASH = 0x5c;
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/**
 * Capture buffers for the six fields, reused for every message. Each starts small and grows
 * up to {@link MAX_FIELD_BYTES}; a pooled scanner gives grown buffers back at the next message.
 */
export class FieldCaptures {
  private readonly buffers: Buffer[] = Array.from({ length: FIELD_COUNT }, () => Buffer.alloc(INITIAL_FIELD_BYTES));
  private readonly lengths = new Int32Array(FIELD_COUNT);
  /** ABSENT, STRING, LITERAL (number, null, true, false) or COMPLEX (an array or object). */
  private readonly kinds = new Uint8Array(FIELD_COUNT);
  private readonly escaped = new Uint8Array(FIELD_COUNT);
  /** A field grew past MAX_FIELD_BYTES. */
  overflowed = false;
  /** Some buffer grew since the last clear (it may be past KEPT_FIELD_BYTES). */
  private grown = false;

  clear(): void {
    const kinds = this.kinds;
    for (let f = 0; f < FIELD_COUNT; f++) kinds[f] = ABSENT;
    this.overflowed = false;
    if (!this.grown) return;
    this.grown = false;
    for (let f = 0; f < FIELD_COUNT; f++) if (this.buffers[f]!.length > KEPT_FIELD_BYTES) this.buffers[f] = Buffer.alloc(INITIAL_FIELD_BYTES);
  }

  begin(field: number, kind: number): void {
    this.kinds[field] = kind;
    this.lengths[field] = 0;
    this.escaped[field] = 0;
  }

  forget(field: number): void {
    this.kinds[field] = ABSENT;
  }

  /** Appends a byte; false when the field is longer than the scanner reads. */
  push(field: number, c: number): boolean {
    if (field === NONE) return true;
    const n = this.lengths[field]!;
    let buf = this.buffers[field]!;
    if (n >= buf.length) {
      if (n >= MAX_FIELD_BYTES) {
        this.overflowed = true;
        return false;
      }
      buf = this.buffers[field] = Buffer.concat([buf, Buffer.alloc(Math.min(buf.length, MAX_FIELD_BYTES - buf.length))]);
      this.grown = true;
    }
    buf[n] = c;
    this.lengths[field] = n + 1;
    if (c === BACKSLASH) this.escaped[field] = 1;
    return true;
  }

  /**
   * Appends `data[from, to)`; false when the field would grow longer than the scanner reads
   * (the bytes that fit are kept, as byte-by-byte {@link push}es would have kept them).
   */
  append(field: number, data: Buffer, from: number, to: number): boolean {
    if (field === NONE) return true;
    let n = this.lengths[field]!;
    const want = n + (to - from);
    let buf = this.buffers[field]!;
    if (want > buf.length) {
      if (buf.length < MAX_FIELD_BYTES) {
        let size = buf.length;
        while (size < want && size < MAX_FIELD_BYTES) size = Math.min(size * 2, MAX_FIELD_BYTES);
        const grown = Buffer.alloc(size);
        buf.copy(grown, 0, 0, n);
        buf = this.buffers[field] = grown;
        this.grown = true;
      }
      if (want > buf.length) {
        for (let k = from; n < buf.length; k++) {
          const c = data[k]!;
          buf[n++] = c;
          if (c === BACKSLASH) this.escaped[field] = 1;
        }
        this.lengths[field] = n;
        this.overflowed = true;
        return false;
      }
    }
    for (let k = from; k < to; k++) {
      const c = data[k]!;
      buf[n++] = c;
      if (c === BACKSLASH) this.escaped[field] = 1;
    }
    this.lengths[field] = n;
    return true;
  }

  has(field: number): boolean {
    return this.kinds[field] !== ABSENT;
  }

  isString(field: number): boolean {
    return this.kinds[field] === STRING;
  }

  /** Whether the field is the string `expected`; escapes are decoded first (`"phx\u005fjoin"` is a join). */
  equals(field: number, expected: Buffer): boolean {
    const n = this.lengths[field]!;
    if (this.kinds[field] !== STRING) return false;
    if (this.escaped[field] === 1) return this.text(field) === expected.toString("utf8");
    if (n !== expected.length) return false;
    // A byte loop: these are event names of a few bytes, where Buffer#compare's native call costs more than the bytes.
    const buf = this.buffers[field]!;
    for (let i = 0; i < n; i++) if (buf[i] !== expected[i]) return false;
    return true;
  }

  /** A string field with an escape JSON rejects (decoded only when it has escapes at all). */
  hasBadEscape(field: number): boolean {
    return this.escaped[field] === 1 && this.text(field) === INVALID;
  }

  isValidLiteral(field: number): boolean {
    const raw = this.buffers[field]!.toString("latin1", 0, this.lengths[field]!);
    return raw === "null" || raw === "true" || raw === "false" || JSON_NUMBER.test(raw);
  }

  /**
   * The field as Phoenix sees it, as text: strings decoded, numbers by value (`1`, `1.0e0` and
   * `-0` as Jason would echo them back, compared by value), containers as {@link COMPLEX_REF},
   * null as null; INVALID for a string JSON would reject.
   */
  text(field: number): string | null {
    const kind = this.kinds[field];
    if (kind === ABSENT) return null;
    if (kind === COMPLEX) return COMPLEX_REF;
    const raw = this.buffers[field]!.toString("utf8", 0, this.lengths[field]!);
    if (kind === LITERAL) return literalText(raw);
    if (this.escaped[field] === 0) return raw;
    try {
      return JSON.parse(`"${raw}"`) as string;
    } catch {
      return INVALID;
    }
  }
}

/** A number's canonical text: integers exactly (Jason keeps big integers), floats by value. */
function literalText(raw: string): string | null {
  if (raw === "null") return null;
  if (raw === "true" || raw === "false") return raw;
  if (/^-?\d+$/.test(raw)) return BigInt(raw).toString();
  return String(Number(raw));
}
