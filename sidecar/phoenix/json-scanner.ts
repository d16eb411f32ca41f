import { VSN_2, EVENT_REPLY, type PhoenixVsn, type PhoenixMessage } from "./message.js";

/**
 * Streams over one Phoenix JSON text message, fed in pieces, and captures only the scalar
 * fields metering needs: join_ref, ref, topic, event and `payload.status`. It keeps no copy
 * of the message: memory is a few fixed capture buffers whatever the message size.
 *
 * vsn 2 messages are arrays `[join_ref, ref, topic, event, payload]`, so everything but the
 * reply status sits in the first bytes and the scan stops at the payload unless the event is
 * `phx_reply`. vsn 1 messages are objects whose key order is up to the encoder (the server
 * writes `event, payload, ref, topic`), so they are scanned to the end.
 *
 * The scanner is not a validator: it tracks strings, escapes and nesting, nothing more. A
 * message it cannot read the fields from is reported as unparsed by {@link finish}.
 */
export class JsonMessageScanner {
  private vsn: PhoenixVsn = VSN_2;
  private wantReplyStatus = true;
  private depth = 0;
  private inString = false;
  private escape = false;
  /** Inside an object at depth 1 or 2: the next string is a key. */
  private expectKey = false;
  /** Field captured by the string or literal being read, or NONE. */
  private target = NONE;
  /** Array index (vsn 2) or key-derived field (vsn 1) of the current depth-1 value. */
  private slot = NONE;
  /** Key-derived field of the current depth-2 value inside the payload. */
  private innerSlot = NONE;
  private inLiteral = false;
  private keyLength = 0;
  private keyOverflow = false;
  private done = false;
  private broken = false;
  private readonly keyBuffer = Buffer.alloc(MAX_KEY_BYTES);
  private readonly fields = new FieldCaptures();

  /**
   * Starts a new message. Without `wantReplyStatus`, a vsn 2 reply is not read past its
   * event either (the caller has no join or leave waiting for one).
   */
  reset(vsn: PhoenixVsn, wantReplyStatus = true): void {
    this.vsn = vsn;
    this.wantReplyStatus = wantReplyStatus;
    this.depth = 0;
    this.inString = false;
    this.escape = false;
    this.expectKey = false;
    this.target = NONE;
    this.slot = vsn === VSN_2 ? 0 : NONE;
    this.innerSlot = NONE;
    this.inLiteral = false;
    this.keyLength = 0;
    this.keyOverflow = false;
    this.done = false;
    this.broken = false;
    this.fields.clear();
  }

  /**
   * Scans the next bytes of the message. Returns false once the fields are known (or the
   * message is hopeless), so the caller can skip the rest without delivering it.
   */
  write(data: Buffer): boolean {
    let i = 0;
    const end = data.length;
    while (i < end && !this.done) {
      if (this.inString) {
        i = this.target === NONE && !this.expectKey ? this.skipString(data, i) : this.readString(data, i);
        continue;
      }
      i = this.readStructure(data, i);
    }
    return !this.done;
  }

  /**
   * Ends the message. Fills `out` and returns true when the message had a string topic and
   * event; returns false (unparsed) otherwise.
   */
  finish(out: PhoenixMessage): boolean {
    if (!this.complete()) return false;
    const f = this.fields;
    out.topic = f.text(TOPIC) ?? "";
    out.event = f.text(EVENT) ?? "";
    out.ref = f.text(REF);
    out.joinRef = f.text(JOIN_REF);
    out.status = out.event === EVENT_REPLY ? f.text(STATUS) : null;
    return true;
  }

  /** Ends the message: whether it had a string topic and event (else it is unparsed). */
  complete(): boolean {
    if (this.inLiteral) this.endLiteral();
    const f = this.fields;
    if (this.broken || !f.isString(TOPIC) || !f.isString(EVENT)) return false;
    return this.done || this.depth === 0;
  }

  /** Whether the event is one of `events` (compared as bytes, nothing decoded). */
  eventIsOneOf(events: readonly Buffer[]): boolean {
    for (const e of events) if (this.fields.equals(EVENT, e)) return true;
    return false;
  }

  private readStructure(data: Buffer, start: number): number {
    const end = data.length;
    for (let i = start; i < end; i++) {
      const c = data[i]!;
      if (this.inLiteral) {
        if (isLiteralByte(c)) {
          this.fields.push(this.target, c);
          continue;
        }
        this.endLiteral();
      }
      switch (c) {
        case QUOTE:
          this.startString();
          return i + 1;
        case BRACE_OPEN:
        case BRACKET_OPEN:
          this.open(c === BRACE_OPEN);
          break;
        case BRACE_CLOSE:
        case BRACKET_CLOSE:
          this.close();
          break;
        case COMMA:
          this.nextValue();
          break;
        case COLON:
          this.expectKey = false;
          break;
        case SPACE:
        case TAB:
        case LF:
        case CR:
          break;
        default:
          this.startLiteral(c);
      }
      if (this.done) return i + 1;
    }
    return end;
  }

  private open(isObject: boolean): void {
    this.depth++;
    if (this.depth === 1) {
      if (isObject === (this.vsn === VSN_2)) this.broken = this.done = true;
      this.expectKey = isObject;
    } else if (this.depth === 2 && this.slot === PAYLOAD) {
      this.expectKey = isObject;
      this.innerSlot = NONE;
    } else {
      this.expectKey = false;
    }
  }

  private close(): void {
    if (this.depth <= 0) {
      this.broken = this.done = true;
      return;
    }
    this.depth--;
    if (this.depth === 0) {
      this.done = true;
    } else if (this.depth === 1) {
      // back in the top-level container: a vsn 1 object waits for its next key
      this.expectKey = false;
      if (this.slot === PAYLOAD && this.vsn === VSN_2) this.checkPayloadDone();
    } else if (this.depth === 2 && this.slot === PAYLOAD) {
      this.expectKey = false;
    }
  }

  private nextValue(): void {
    if (this.depth === 1) {
      if (this.vsn === VSN_2) {
        this.slot = this.slot >= 0 && this.slot < PAYLOAD ? this.slot + 1 : NONE;
        if (this.slot === PAYLOAD && !this.needsStatus()) this.done = true;
      } else {
        this.slot = NONE;
        this.expectKey = true;
      }
    } else if (this.depth === 2 && this.slot === PAYLOAD) {
      this.innerSlot = NONE;
      this.expectKey = true;
      if (this.vsn === VSN_2) this.checkPayloadDone();
    }
  }

  /** vsn 2: every field is known once the status is, or the payload ended without one. */
  private checkPayloadDone(): void {
    if (this.fields.has(STATUS) || this.depth === 1) this.done = true;
  }

  private needsStatus(): boolean {
    return this.wantReplyStatus && this.fields.equals(EVENT, EVENT_REPLY_BYTES);
  }

  private valueTarget(): number {
    if (this.depth === 1) return this.slot >= 0 && this.slot < PAYLOAD ? this.slot : NONE;
    if (this.depth === 2 && this.slot === PAYLOAD && this.innerSlot === STATUS) return STATUS;
    return NONE;
  }

  private startString(): void {
    this.inString = true;
    this.escape = false;
    if (this.expectKey) {
      this.keyLength = 0;
      this.keyOverflow = false;
      this.target = NONE;
    } else {
      this.target = this.valueTarget();
      if (this.target !== NONE) this.fields.begin(this.target, true);
    }
  }

  private startLiteral(c: number): void {
    this.inLiteral = true;
    this.target = this.expectKey ? NONE : this.valueTarget();
    if (this.target !== NONE) {
      this.fields.begin(this.target, false);
      this.fields.push(this.target, c);
    }
  }

  private endLiteral(): void {
    this.inLiteral = false;
    this.target = NONE;
  }

  /** Reads a key or captured string byte by byte (both are short). */
  private readString(data: Buffer, start: number): number {
    const end = data.length;
    for (let i = start; i < end; i++) {
      const c = data[i]!;
      if (this.escape) {
        this.escape = false;
      } else if (c === BACKSLASH) {
        this.escape = true;
      } else if (c === QUOTE) {
        this.endString();
        return i + 1;
      }
      if (this.expectKey) {
        if (this.keyLength < MAX_KEY_BYTES) this.keyBuffer[this.keyLength++] = c;
        else this.keyOverflow = true;
      } else if (!this.fields.push(this.target, c)) {
        this.broken = this.done = true;
        return i + 1;
      }
    }
    return end;
  }

  /** Skips an uninteresting string with native searches for the closing quote. */
  private skipString(data: Buffer, start: number): number {
    let i = start;
    const end = data.length;
    if (this.escape) {
      this.escape = false;
      i++;
    }
    while (i < end) {
      const q = data.indexOf(QUOTE, i);
      if (q < 0) {
        this.escape = countBackslashesBefore(data, end, i) % 2 === 1;
        return end;
      }
      if (countBackslashesBefore(data, q, i) % 2 === 0) {
        this.inString = false;
        return q + 1;
      }
      i = q + 1;
    }
    return end;
  }

  private endString(): void {
    this.inString = false;
    if (this.expectKey) {
      const field = this.keyOverflow ? NONE : fieldForKey(this.keyBuffer, this.keyLength, this.depth);
      if (this.depth === 1) this.slot = field;
      else if (this.depth === 2 && this.slot === PAYLOAD) this.innerSlot = field === STATUS ? STATUS : NONE;
    } else if (this.target === STATUS && this.vsn === VSN_2) {
      this.done = true;
    }
    this.target = NONE;
  }
}

/** Fixed-size capture buffers for the five fields, reused for every message. */
class FieldCaptures {
  private readonly bytes = Buffer.alloc(FIELD_COUNT * MAX_FIELD_BYTES);
  private readonly lengths = new Int32Array(FIELD_COUNT);
  /** 0 = absent, 1 = string, 2 = literal (number, null, true, false). */
  private readonly kinds = new Uint8Array(FIELD_COUNT);
  private readonly escaped = new Uint8Array(FIELD_COUNT);

  clear(): void {
    this.kinds.fill(0);
  }

  begin(field: number, isString: boolean): void {
    this.kinds[field] = isString ? 1 : 2;
    this.lengths[field] = 0;
    this.escaped[field] = 0;
  }

  /** Appends a byte; false when the field is longer than any real topic or ref. */
  push(field: number, c: number): boolean {
    if (field === NONE) return true;
    const n = this.lengths[field]!;
    if (n >= MAX_FIELD_BYTES) return false;
    this.bytes[field * MAX_FIELD_BYTES + n] = c;
    this.lengths[field] = n + 1;
    if (c === BACKSLASH) this.escaped[field] = 1;
    return true;
  }

  has(field: number): boolean {
    return this.kinds[field] !== 0;
  }

  isString(field: number): boolean {
    return this.kinds[field] === 1;
  }

  equals(field: number, expected: Buffer): boolean {
    const n = this.lengths[field]!;
    if (this.kinds[field] !== 1 || n !== expected.length) return false;
    const at = field * MAX_FIELD_BYTES;
    return this.bytes.compare(expected, 0, n, at, at + n) === 0;
  }

  /** The field as a string: refs given as numbers become their decimal text; null stays null. */
  text(field: number): string | null {
    const kind = this.kinds[field];
    if (kind === 0) return null;
    const at = field * MAX_FIELD_BYTES;
    const raw = this.bytes.toString("utf8", at, at + this.lengths[field]!);
    if (kind === 2) return raw === "null" ? null : raw;
    if (this.escaped[field] === 0) return raw;
    try {
      return JSON.parse(`"${raw}"`) as string;
    } catch {
      return raw;
    }
  }
}

function fieldForKey(key: Buffer, length: number, depth: number): number {
  const k = key.toString("latin1", 0, length);
  if (depth === 2) return k === "status" ? STATUS : NONE;
  switch (k) {
    case "join_ref":
      return JOIN_REF;
    case "ref":
      return REF;
    case "topic":
      return TOPIC;
    case "event":
      return EVENT;
    case "payload":
      return PAYLOAD;
    default:
      return NONE;
  }
}

function countBackslashesBefore(data: Buffer, index: number, floor: number): number {
  let n = 0;
  for (let i = index - 1; i >= floor && data[i] === BACKSLASH; i--) n++;
  return n;
}

function isLiteralByte(c: number): boolean {
  return c !== COMMA && c !== BRACE_CLOSE && c !== BRACKET_CLOSE && c !== SPACE && c !== TAB && c !== LF && c !== CR && c !== COLON;
}

// Field indexes: the vsn 2 array positions, then the payload status.
const NONE = -1;
const JOIN_REF = 0;
const REF = 1;
const TOPIC = 2;
const EVENT = 3;
const PAYLOAD = 4;
const STATUS = 5;
const FIELD_COUNT = 6;
/** Longer topics or refs than this are not Phoenix traffic we can meter; the message counts as unparsed. */
const MAX_FIELD_BYTES = 1024;
const MAX_KEY_BYTES = 16;
const EVENT_REPLY_BYTES = Buffer.from(EVENT_REPLY);

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const BRACE_OPEN = 0x7b;
const BRACE_CLOSE = 0x7d;
const BRACKET_OPEN = 0x5b;
const BRACKET_CLOSE = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
