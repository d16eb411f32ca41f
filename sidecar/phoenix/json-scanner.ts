import { COMPLEX, FieldCaptures, INVALID, LITERAL, NONE, STRING } from "./field-captures.js";
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
 * Fields are read the way Phoenix reads them (Jason, then the V1/V2 serializers): escapes in
 * any string or key are decoded, a duplicate vsn 1 key takes the last value, a vsn 2 array may
 * have more than five elements but not fewer, a vsn 1 object needs topic, event, payload and
 * ref, refs may be any JSON value (numbers are compared by value, containers match any ref).
 *
 * The scanner is not a full validator, but it gives up at the first byte that cannot be JSON
 * outside a string (a zero byte, text before the opening bracket), so garbage is unparsed at
 * once and its rest is skipped. A message it cannot read the fields from is reported as
 * unparsed by {@link finish}; one with a field longer than it reads is {@link undecided}.
 */
export class JsonMessageScanner {
  private vsn: PhoenixVsn = VSN_2;
  private wantReplyStatus = true;
  private depth = 0;
  private inString = false;
  private escape = false;
  /** Inside an object at depth 1 or 2: the next string is a key. */
  private expectKey = false;
  /** The vsn 2 payload (depth 2) is an object, so its members have keys. */
  private payloadIsObject = false;
  /** Field captured by the string or literal being read, or NONE. */
  private target = NONE;
  /** Array index (vsn 2) or key-derived field (vsn 1) of the current depth-1 value. */
  private slot = NONE;
  /** Key-derived field of the current depth-2 value inside the payload. */
  private innerSlot = NONE;
  private inLiteral = false;
  private keyLength = 0;
  private keyOverflow = false;
  private keyEscaped = false;
  /** Required members seen: vsn 2 reached its payload; vsn 1 had `ref` and `payload` keys. */
  private seenRef = false;
  private seenPayload = false;
  private done = false;
  /** Nothing of the message was read yet: the vsn 2 prefix may be read in one go ({@link readPrefix}). */
  private fresh = true;
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
    this.keyEscaped = false;
    this.seenRef = this.seenPayload = false;
    this.done = false;
    this.fresh = true;
    this.broken = false;
    this.fields.clear();
  }

  /**
   * Scans the next bytes of the message, `data[start, end)`. Returns false once the fields are
   * known (or the message is hopeless), so the caller can skip the rest without delivering it.
   */
  write(data: Buffer, start = 0, end = data.length): boolean {
    let i = start;
    if (this.fresh) {
      this.fresh = false;
      if (this.vsn === VSN_2) {
        const at = this.readPrefix(data, start, end);
        if (at >= 0) {
          if (this.done) return false;
          i = at;
        }
      }
    }
    while (i < end && !this.done) {
      if (this.inString) {
        i = this.target === NONE && !this.expectKey ? this.skipString(data, i, end) : this.readString(data, i, end);
        continue;
      }
      i = this.readStructure(data, i, end);
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
    const topic = f.text(TOPIC);
    const event = f.text(EVENT);
    if (topic === INVALID || event === INVALID || topic === null || event === null) return false;
    const ref = f.text(REF);
    const joinRef = f.text(JOIN_REF);
    const status = event === EVENT_REPLY ? f.text(STATUS) : null;
    if (ref === INVALID || joinRef === INVALID || status === INVALID) return false;
    out.topic = topic;
    out.event = event;
    out.ref = ref;
    out.joinRef = joinRef;
    out.status = status;
    return true;
  }

  /** Ends the message: whether it had a string topic and event and the members Phoenix requires. */
  complete(): boolean {
    if (this.inLiteral) this.endLiteral();
    const f = this.fields;
    if (this.broken || !f.isString(TOPIC) || !f.isString(EVENT) || !this.seenRef || !this.seenPayload) return false;
    return this.done || this.depth === 0;
  }

  /** A field was longer than the scanner reads: the message was relayed without being decided. */
  get undecided(): boolean {
    return this.fields.overflowed;
  }

  /** Whether the topic is `topic` (compared as bytes, as {@link eventIsOneOf}). */
  topicIs(topic: Buffer): boolean {
    return this.fields.equals(TOPIC, topic);
  }

  /** Whether the event is one of `events` (compared as bytes; decoded only if it had escapes). */
  eventIsOneOf(events: readonly Buffer[]): boolean {
    for (const e of events) if (this.fields.equals(EVENT, e)) return true;
    return false;
  }

  /**
   * The fast path of a vsn 2 message whose first bytes hold `[` and four plain fields, each a
   * string without escapes or `null`, each followed by a comma, as Phoenix's encoder and the
   * JS client write them: the fields are captured in one append each and the scan goes on at
   * the payload, in the very state the byte-by-byte scan would have reached there. Anything
   * else (whitespace, escapes, numbers, a prefix cut by the read) returns -1 with nothing
   * changed, and the general scan reads the message from its first byte.
   */
  private readPrefix(data: Buffer, start: number, end: number): number {
    if (start >= end || data[start] !== BRACKET_OPEN) return -1;
    const at = PREFIX_RANGES;
    let i = start + 1;
    for (let f = 0; f < PAYLOAD; f++) {
      if (i >= end) return -1;
      const c = data[i]!;
      if (c === QUOTE) {
        let j = i + 1;
        const limit = Math.min(end, j + MAX_PREFIX_FIELD_BYTES);
        while (j < limit) {
          const d = data[j]!;
          if (d === QUOTE || d === BACKSLASH || d < 0x20) break;
          j++;
        }
        if (j >= limit || data[j] !== QUOTE) return -1;
        at[3 * f] = STRING;
        at[3 * f + 1] = i + 1;
        at[3 * f + 2] = j;
        i = j + 1;
      } else if (c === LOWER_N && i + 4 <= end && data[i + 1] === LOWER_U && data[i + 2] === LOWER_L && data[i + 3] === LOWER_L) {
        at[3 * f] = LITERAL;
        at[3 * f + 1] = i;
        at[3 * f + 2] = i + 4;
        i += 4;
      } else {
        return -1;
      }
      if (i >= end || data[i] !== COMMA) return -1;
      i++;
    }
    for (let f = 0; f < PAYLOAD; f++) {
      this.fields.begin(f, at[3 * f]!);
      this.fields.append(f, data, at[3 * f + 1]!, at[3 * f + 2]!);
    }
    // As after `[` and four values and commas: at the payload, every required member seen.
    this.depth = 1;
    this.slot = PAYLOAD;
    this.seenRef = this.seenPayload = true;
    if (!this.needsStatus()) this.done = true;
    return i;
  }

  private readStructure(data: Buffer, start: number, end: number): number {
    for (let i = start; i < end; i++) {
      const c = data[i]!;
      if (this.inLiteral) {
        if (isLiteralByte(c)) {
          if (!this.fields.push(this.target, c)) return this.giveUp(i);
          continue;
        }
        this.endLiteral();
        if (this.done) return i + 1;
      }
      // The message is one array (vsn 2) or object (vsn 1): nothing else may open it.
      if (this.depth === 0 && c !== BRACKET_OPEN && c !== BRACE_OPEN && c !== SPACE && c !== TAB && c !== LF && c !== CR) return this.giveUp(i);
      switch (c) {
        case QUOTE:
          this.startString();
          return i + 1;
        case BRACE_OPEN:
        case BRACKET_OPEN:
          if (this.expectKey) return this.giveUp(i); // an object key must be a string
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
          if (!isLiteralByte(c) || this.depth === 0 || this.expectKey) return this.giveUp(i);
          this.startLiteral(c);
      }
      if (this.done) return i + 1;
    }
    return end;
  }

  /** Bytes that cannot be JSON here: the message is unparsed and its rest need not be read. */
  private giveUp(i: number): number {
    this.broken = this.done = true;
    return i + 1;
  }

  private open(isObject: boolean): void {
    this.valueStarts(COMPLEX);
    this.depth++;
    if (this.depth === 1) {
      if (isObject === (this.vsn === VSN_2)) this.broken = this.done = true;
      this.expectKey = isObject;
    } else if (this.depth === 2 && this.slot === PAYLOAD) {
      this.expectKey = this.payloadIsObject = isObject;
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
        if (this.slot === PAYLOAD) this.seenRef = this.seenPayload = true;
        if (this.slot === PAYLOAD && !this.needsStatus()) this.done = true;
      } else {
        this.slot = NONE;
        this.expectKey = true;
      }
    } else if (this.depth === 2 && this.slot === PAYLOAD) {
      this.innerSlot = NONE;
      this.expectKey = this.payloadIsObject;
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
      this.keyEscaped = false;
      this.target = NONE;
    } else {
      this.target = this.valueStarts(STRING);
    }
  }

  private startLiteral(c: number): void {
    this.inLiteral = true;
    this.target = this.valueStarts(LITERAL);
    if (this.target !== NONE) this.fields.push(this.target, c);
  }

  /**
   * A value begins at the current position: a captured field starts over (so a duplicate vsn 1
   * key's last value wins, and a container where a ref or topic belongs replaces it).
   */
  private valueStarts(kind: number): number {
    const target = this.valueTarget();
    if (target !== NONE) this.fields.begin(target, kind);
    if (this.depth === 1 && this.slot === PAYLOAD) {
      this.seenPayload = true;
      this.fields.forget(STATUS);
    }
    return kind === COMPLEX ? NONE : target;
  }

  private endLiteral(): void {
    this.inLiteral = false;
    if (this.target !== NONE && !this.fields.isValidLiteral(this.target)) this.broken = this.done = true;
    this.target = NONE;
  }

  /**
   * Reads a key or captured string (both are short): the run of plain bytes up to the next
   * quote, backslash or control byte is found first and captured in one append, so a ref or
   * topic costs a tight loop, not a call per byte.
   */
  private readString(data: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      if (this.escape) {
        // The byte after a backslash is taken as it is (a quote there does not end the string).
        this.escape = false;
        if (!this.append(data, i, i + 1)) return this.giveUp(i);
        i++;
        continue;
      }
      let j = i;
      let c = 0;
      while (j < end) {
        c = data[j]!;
        if (c === QUOTE || c === BACKSLASH || c < 0x20) break;
        j++;
      }
      if (j > i && !this.append(data, i, j)) return this.giveUp(j - 1);
      if (j === end) return end;
      if (c === QUOTE) {
        this.endString();
        return j + 1;
      }
      if (c < 0x20) return this.giveUp(j); // JSON strings hold no raw control characters
      this.escape = true; // a backslash, captured with the byte it escapes
      if (this.expectKey) this.keyEscaped = true;
      if (!this.append(data, j, j + 1)) return this.giveUp(j);
      i = j + 1;
    }
    return end;
  }

  /** Captures `data[from, to)` into the key or the target field; false when the field is longer than the scanner reads. */
  private append(data: Buffer, from: number, to: number): boolean {
    if (!this.expectKey) return this.fields.append(this.target, data, from, to);
    for (let k = from; k < to; k++) {
      if (this.keyLength < MAX_KEY_BYTES) this.keyBuffer[this.keyLength++] = data[k]!;
      else this.keyOverflow = true;
    }
    return true;
  }

  /** Skips an uninteresting string with native searches for the closing quote. */
  private skipString(data: Buffer, start: number, end: number): number {
    let i = start;
    if (this.escape) {
      this.escape = false;
      i++;
    }
    while (i < end) {
      const q = findQuote(data, i, end);
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
      const field = this.keyOverflow ? NONE : fieldForKey(this.keyBuffer, this.keyLength, this.depth, this.keyEscaped);
      if (this.depth === 1) this.slot = field;
      if (this.depth === 1 && field === REF) this.seenRef = true;
      else if (this.depth === 2 && this.slot === PAYLOAD) this.innerSlot = field === STATUS ? STATUS : NONE;
    } else if (this.target !== NONE && this.fields.hasBadEscape(this.target)) {
      this.broken = this.done = true; // a bad escape: Jason rejects the whole message
    } else if (this.target === STATUS && this.vsn === VSN_2) {
      this.done = true;
    }
    this.target = NONE;
  }
}

function fieldForKey(key: Buffer, length: number, depth: number, escaped: boolean): number {
  let k = key.toString(escaped ? "utf8" : "latin1", 0, length);
  if (escaped) {
    try {
      k = JSON.parse(`"${k}"`) as string;
    } catch {
      return NONE;
    }
  }
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

/**
 * The first quote in `data[from, end)`, or -1. A short range is searched in a loop; a long one
 * natively, though `data` may go on past `end` (a reused scratch buffer or ring of at most 32
 * KiB, or the chunk): past {@link NATIVE_SEARCH_BYTES} the search beyond `end` costs no more
 * than the bytes it was given.
 */
function findQuote(data: Buffer, from: number, end: number): number {
  if (end - from < NATIVE_SEARCH_BYTES) {
    for (let i = from; i < end; i++) if (data[i] === QUOTE) return i;
    return -1;
  }
  const q = data.indexOf(QUOTE, from);
  return q < end ? q : -1;
}

function countBackslashesBefore(data: Buffer, index: number, floor: number): number {
  let n = 0;
  for (let i = index - 1; i >= floor && data[i] === BACKSLASH; i--) n++;
  return n;
}

/** Bytes a JSON number, true, false or null is made of; anything else outside a string is not JSON. */
function isLiteralByte(c: number): boolean {
  return LITERAL_BYTES[c] === 1;
}

const LITERAL_BYTES = new Uint8Array(256);
for (const c of "0123456789+-.eEtrufalsn") LITERAL_BYTES[c.charCodeAt(0)] = 1;

// Field indexes: the vsn 2 array positions, then the payload status.
const JOIN_REF = 0;
const REF = 1;
const TOPIC = 2;
const EVENT = 3;
const PAYLOAD = 4;
const STATUS = 5;
/** Longest key read: "join_ref" with every character escaped is 48 bytes. */
const MAX_KEY_BYTES = 64;
const EVENT_REPLY_BYTES = Buffer.from(EVENT_REPLY);

/** Kind, start and end of each prefix field read by the vsn 2 fast path (shared: the scan is synchronous). */
const PREFIX_RANGES = new Int32Array(3 * 4);
/** A prefix field longer than this is left to the general scan (which reads fields up to MAX_FIELD_BYTES, 64 KiB). */
const MAX_PREFIX_FIELD_BYTES = 1024;
const LOWER_N = 0x6e;
const LOWER_U = 0x75;
const LOWER_L = 0x6c;
/** Below this many bytes a string is searched for its quote in a loop: a native call costs more. */
const NATIVE_SEARCH_BYTES = 256;
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
