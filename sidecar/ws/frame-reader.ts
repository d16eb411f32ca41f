// Observe-only WebSocket frame reader (RFC 6455, RFC 7692) for the sidecar's tap.
//
// The proxy forwards every chunk first and then hands the same chunk to one FrameReader per direction.
// The reader never writes to the chunk, never throws out of push(), buffers at most an 8-byte header
// across chunks, and delivers payload as views: of the chunk itself (server frames), of one reusable
// scratch buffer shared by all readers (client frames, unmasked only as far as they are delivered) or of
// the inflater's ring.
// Bytes nobody wants are skipped by counting them down. Everything happens synchronously inside push(),
// so the events of the two directions reach the sink in wire order; the one exception is inflation,
// whose work per call is bounded (inflateSliceBytes): past it push() returns false with the chunk held,
// and the caller, which keeps the direction's source paused meanwhile, calls resume() on a later turn
// of the event loop. A compressed message that would inflate past maxInflatedMessageBytes is not read
// to its end: a decompression bomb costs a bounded slice of CPU per turn and a bounded total.

import { createFrameError, type FrameError, type FrameErrorCode } from "./errors.js";
import type { DeflateParams } from "./extension.js";
import type { InflateBudget } from "./inflate-budget.js";
import { Inflater } from "./inflater.js";

export { createFrameError, FrameError, type FrameErrorCode } from "./errors.js";
export { parseDeflateExtension, type DeflateParams } from "./extension.js";

/** Receives what a {@link FrameReader} sees; called synchronously from `push()`. */
export interface MessageSink {
  /** A text (binary=false) or binary data message starts (its first frame header is parsed). */
  onMessageStart(binary: boolean): void;
  /**
   * Next unmasked, inflated payload bytes of the current data message, in order: `data[start, end)`
   * (never empty). `data` is a reused scratch buffer, the inflater's ring or the relayed chunk
   * itself, passed whole with the range so that no view is made per delivery: valid only during the
   * call, and never to be modified. Return false when no more bytes of this message are wanted: the
   * reader then skips the rest of it cheaply (it still inflates, without delivering, when the LZ77
   * window must be kept for the next message).
   */
  onMessageData(data: Buffer, start: number, end: number): boolean;
  /** The current data message is complete (its final fragment ended). */
  onMessageEnd(): void;
  /** A close frame was seen (code undefined when the close payload is empty). Nothing follows it. */
  onClose(code: number | undefined): void;
  /** The stream violates RFC 6455 or a limit; the reader stops parsing this direction for good. */
  onError(err: FrameError): void;
}

/** How a {@link FrameReader} reads one direction of one connection. */
export interface FrameReaderOptions {
  /** true for client→server (frames must be masked), false for server→client (must not be). */
  fromClient: boolean;
  /** Negotiated permessage-deflate parameters (from the 101 response), or null. */
  deflate: DeflateParams | null;
  /**
   * Max bytes of one message delivered before the reader stops delivering it (default 64 KiB); the
   * rest is skipped as if the sink had returned false. Not a buffer size: nothing is accumulated.
   */
  maxMessageBytes?: number;
  /** Frames whose payload length exceeds this fail with WS_ERR_FRAME_TOO_LARGE (default 2^53 - 1). */
  maxFrameBytes?: number;
  /**
   * Bytes the reader inflates per push()/resume() call before it stops and returns false so other
   * work can run (default Infinity: never). One ring's worth (≤ 32 KiB) may run over.
   */
  inflateSliceBytes?: number;
  /**
   * Inflated bytes of one message past which the reader stops inflating it (default Infinity). Without
   * context takeover the next message starts afresh; with it the LZ77 window is lost, so every later
   * compressed message of this direction goes unread too (frames are still followed and delivered as
   * empty messages). Each message cut short or skipped this way is reported to `onUninspected`.
   */
  maxInflatedMessageBytes?: number;
  /**
   * Called once for each compressed message not inspected in full because of maxInflatedMessageBytes,
   * before its onMessageEnd; `contextLost` is true once later compressed messages cannot be read either.
   */
  onUninspected?: (contextLost: boolean) => void;
  /**
   * Shared by every reader of the process: inflated bytes count against it too, and the reader
   * yields (as when its own slice ran out) once it is spent for this turn of the event loop.
   */
  inflateBudget?: InflateBudget;
}

const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
/** Client payload is unmasked into the shared scratch (below) in pieces of at most 16 KiB. */
const MAX_SCRATCH_BYTES = 16 * 1024;
const MIN_SCRATCH_BYTES = 512;
/** The first piece of a masked message unmasked for the sink: a Phoenix vsn 2 prefix fits in it. */
const FIRST_UNMASK_BYTES = 256;

// Reader states; everything from CLOSED on is terminal.
const FRAME_START = 0;
const LENGTH_16 = 1;
const LENGTH_64 = 2;
const MASK_KEY = 3;
const DATA_PAYLOAD = 4;
const CONTROL_PAYLOAD = 5;
const CLOSED = 6;
const FAILED = 7;
const DESTROYED = 8;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PONG = 0xa;
const MAX_CONTROL_PAYLOAD = 125;
/** 2^53 - 1 is 2^21 - 1 in the high 32 bits of a 64-bit length. */
const MAX_HIGH_LENGTH_WORD = 0x1fffff;

/** The sync-flush tail that permessage-deflate strips from each message (RFC 7692 §7.2.2). */
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const EMPTY = Buffer.alloc(0);

/**
 * Incremental, allocation-light parser of one direction of a WebSocket connection. Feed it every
 * relayed chunk with {@link push}; it reports messages, close and errors to its {@link MessageSink}.
 */
export class FrameReader {
  private readonly sink: MessageSink;
  private readonly fromClient: boolean;
  private readonly deflate: boolean;
  private readonly noContextTakeover: boolean;
  private readonly windowBits: number;
  private readonly maxMessageBytes: number;
  private readonly maxFrameBytes: number;
  private readonly inflateSliceBytes: number;
  private readonly maxInflatedMessageBytes: number;
  private readonly onUninspected: ((contextLost: boolean) => void) | null;
  private readonly inflateBudget: InflateBudget | null;

  private state = FRAME_START;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Stream offset of the current chunk's first byte (bytes pushed before it). */
  private base = 0;
  /** Stream offsets of the first header byte of the frame being read and of the current data message. */
  private frameStart = 0;
  private messageStart = -1;
  /** Holds a header field that spans chunks (allocated the first time one does); `at` is where the last consumed field starts. */
  private carry: Buffer | null = null;
  private carried = 0;
  private at = 0;

  private fin = false;
  private opcode = 0;
  private rsv1 = false;
  private masked = false;
  private payloadLength = 0;
  private remaining = 0;
  /** The frame's masking key, its four bytes big-endian in one number (no buffer per reader). */
  private maskKey = 0;
  private maskPhase = 0;

  private inMessage = false;
  /** Bytes of the current message unmasked for the sink at the next delivery (doubles per piece). */
  private unmaskPiece = FIRST_UNMASK_BYTES;
  private compressed = false;
  private wanted = false;
  private delivered = 0;
  private closeCode = 0;
  private closeBytes = 0;
  private inflater: Inflater | null = null;
  /** Inflated bytes this push()/resume() call may still produce before it yields. */
  private sliceLeft = Infinity;
  /** The current chunk is only partly parsed: resume() goes on with it. */
  private yielded = false;
  private inflatedInMessage = 0;
  /** The rest of the current compressed message is skipped uninflated (its inflate cap was hit). */
  private skipInflate = false;
  /** With context takeover, the window was given up: no compressed message can be read any more. */
  private contextLost = false;

  constructor(sink: MessageSink, options: FrameReaderOptions) {
    this.sink = sink;
    this.fromClient = options.fromClient;
    this.deflate = options.deflate !== null;
    const params = options.deflate;
    this.noContextTakeover =
      params !== null && (options.fromClient ? params.clientNoContextTakeover : params.serverNoContextTakeover);
    this.windowBits = params === null ? 15 : options.fromClient ? params.clientMaxWindowBits : params.serverMaxWindowBits;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxFrameBytes = options.maxFrameBytes ?? Number.MAX_SAFE_INTEGER;
    this.inflateSliceBytes = options.inflateSliceBytes ?? Infinity;
    this.maxInflatedMessageBytes = options.maxInflatedMessageBytes ?? Infinity;
    this.onUninspected = options.onUninspected ?? null;
    this.inflateBudget = options.inflateBudget ?? null;
  }

  /**
   * Parses the next relayed bytes. Never modifies `chunk` and never throws: a violation (or an
   * exception from the sink) goes to `onError`. Returns true when the chunk is parsed and no longer
   * referenced; false when the inflate slice ran out first: the reader keeps the chunk, and the caller
   * must call {@link resume} (not push) until it returns true.
   */
  push(chunk: Buffer): boolean {
    if (this.state >= CLOSED) return true;
    if (this.yielded) throw new Error("FrameReader.push() while a chunk is still being parsed: call resume() first");
    this.chunk = chunk;
    this.pos = 0;
    return this.parse();
  }

  /** Goes on with a chunk that push() or resume() left partly parsed; same result as push(). */
  resume(): boolean {
    if (!this.yielded) return true;
    this.yielded = false;
    if (this.state >= CLOSED) return this.finishChunk();
    return this.parse();
  }

  /** A chunk is held partly parsed (push() or resume() returned false). */
  get busy(): boolean {
    return this.yielded;
  }

  private parse(): boolean {
    this.sliceLeft = this.inflateSliceBytes;
    try {
      this.run();
    } catch (err) {
      this.yielded = false;
      if (this.state < CLOSED) this.fail("WS_ERR_INTERNAL", "exception in the frame reader or its sink", err);
    }
    if (this.yielded && this.state < CLOSED) return false;
    return this.finishChunk();
  }

  private finishChunk(): true {
    this.yielded = false;
    this.base += this.chunk.length;
    this.pos = 0;
    this.chunk = EMPTY;
    return true;
  }

  /**
   * Stream offset (bytes since the first push) of the next byte to parse. Inside a sink
   * callback for the end of a message it is the offset just past that message's last frame.
   */
  get offset(): number {
    return this.base + this.pos;
  }

  /**
   * Stream offset of the first header byte of the latest data message: the one in progress,
   * or during `onMessageEnd` the one ending; -1 before any.
   */
  get messageStartOffset(): number {
    return this.messageStart;
  }

  /** Stream offset of the first header byte of the frame being read (or last read). */
  get frameStartOffset(): number {
    return this.frameStart;
  }

  /** A data message has started and not ended. */
  get inDataMessage(): boolean {
    return this.inMessage;
  }

  /** True between frames outside any data message: a whole message may be inserted here. */
  get atMessageBoundary(): boolean {
    return this.state >= CLOSED || (this.state === FRAME_START && this.carried === 0 && !this.inMessage);
  }

  /** Stops parsing for good and drops the inflater's window and any held chunk. */
  destroy(): void {
    this.state = DESTROYED;
    this.wanted = false;
    this.inflater = null;
    if (this.yielded) this.finishChunk();
  }

  private run(): void {
    let more = true;
    while (more) {
      switch (this.state) {
        case FRAME_START:
          more = this.readFrameStart();
          break;
        case LENGTH_16:
          more = this.readLength16();
          break;
        case LENGTH_64:
          more = this.readLength64();
          break;
        case MASK_KEY:
          more = this.readMaskKey();
          break;
        case DATA_PAYLOAD:
          more = this.readDataPayload();
          break;
        case CONTROL_PAYLOAD:
          more = this.readControlPayload();
          break;
        default:
          more = false;
      }
    }
  }

  /**
   * Takes the next `n` (≤ 8) bytes. Returns the chunk itself when they are all in it (no copy), the
   * carry buffer once bytes spanning chunks are complete, or null when more input is needed; the
   * bytes start at `this.at`. Returning a buffer and an offset avoids a view object per header.
   */
  private consume(n: number): Buffer | null {
    const available = this.chunk.length - this.pos;
    if (this.carried === 0 && available >= n) {
      this.at = this.pos;
      this.pos += n;
      return this.chunk;
    }
    const take = Math.min(n - this.carried, available);
    const carry = (this.carry ??= Buffer.alloc(8));
    this.chunk.copy(carry, this.carried, this.pos, this.pos + take);
    this.carried += take;
    this.pos += take;
    if (this.carried < n) return null;
    this.carried = 0;
    this.at = 0;
    return carry;
  }

  private readFrameStart(): boolean {
    if (this.carried === 0) this.frameStart = this.base + this.pos;
    const buf = this.consume(2);
    if (buf === null) return false;
    const b0 = buf[this.at]!;
    const b1 = buf[this.at + 1]!;
    if ((b0 & 0x30) !== 0) return this.fail("WS_ERR_UNEXPECTED_RSV_2_3", "RSV2 and RSV3 must be clear");
    this.fin = (b0 & 0x80) !== 0;
    this.rsv1 = (b0 & 0x40) !== 0;
    this.opcode = b0 & 0x0f;
    this.masked = (b1 & 0x80) !== 0;
    this.payloadLength = b1 & 0x7f;
    if (!this.checkOpcode()) return false;
    if (this.masked !== this.fromClient) {
      return this.fromClient
        ? this.fail("WS_ERR_EXPECTED_MASK", "MASK must be set")
        : this.fail("WS_ERR_UNEXPECTED_MASK", "MASK must be clear");
    }
    if (this.payloadLength === 126) this.state = LENGTH_16;
    else if (this.payloadLength === 127) this.state = LENGTH_64;
    else return this.haveLength();
    return true;
  }

  /** RFC 6455 §5.2/§5.5 and RFC 7692 §6: which opcode may come now, with which bits. */
  private checkOpcode(): boolean {
    const opcode = this.opcode;
    if (opcode === OP_CONTINUATION) {
      if (this.rsv1) return this.fail("WS_ERR_UNEXPECTED_RSV_1", "RSV1 must be clear on a continuation frame");
      if (!this.inMessage) return this.fail("WS_ERR_INVALID_OPCODE", "invalid opcode 0 (no message to continue)");
      return true;
    }
    if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.inMessage) return this.fail("WS_ERR_INVALID_OPCODE", `invalid opcode ${opcode} inside a fragmented message`);
      if (this.rsv1 && !this.deflate) return this.fail("WS_ERR_UNEXPECTED_RSV_1", "RSV1 must be clear");
      return true;
    }
    if (opcode >= OP_CLOSE && opcode <= OP_PONG) {
      if (!this.fin) return this.fail("WS_ERR_EXPECTED_FIN", "FIN must be set on a control frame");
      if (this.rsv1) return this.fail("WS_ERR_UNEXPECTED_RSV_1", "RSV1 must be clear on a control frame");
      if (this.payloadLength > MAX_CONTROL_PAYLOAD || (opcode === OP_CLOSE && this.payloadLength === 1)) {
        return this.fail("WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH", `invalid payload length ${this.payloadLength}`);
      }
      return true;
    }
    return this.fail("WS_ERR_INVALID_OPCODE", `invalid opcode ${opcode}`);
  }

  private readLength16(): boolean {
    const buf = this.consume(2);
    if (buf === null) return false;
    this.payloadLength = (buf[this.at]! << 8) | buf[this.at + 1]!;
    return this.haveLength();
  }

  private readLength64(): boolean {
    const buf = this.consume(8);
    if (buf === null) return false;
    const high = buf.readUInt32BE(this.at);
    if (high > MAX_HIGH_LENGTH_WORD) {
      return this.fail("WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH", "payload length > 2^53 - 1");
    }
    this.payloadLength = high * 0x100000000 + buf.readUInt32BE(this.at + 4);
    return this.haveLength();
  }

  /** The limit is checked the moment the length is known, before a byte of payload is looked at. */
  private haveLength(): boolean {
    if (this.payloadLength > this.maxFrameBytes) {
      return this.fail("WS_ERR_FRAME_TOO_LARGE", `payload length ${this.payloadLength} > ${this.maxFrameBytes}`);
    }
    this.remaining = this.payloadLength;
    this.maskPhase = 0;
    if (this.masked) {
      this.state = MASK_KEY;
      return true;
    }
    return this.beginPayload();
  }

  private readMaskKey(): boolean {
    const buf = this.consume(4);
    if (buf === null) return false;
    const at = this.at;
    this.maskKey = ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
    return this.beginPayload();
  }

  private beginPayload(): boolean {
    if (this.opcode >= OP_CLOSE) {
      this.closeCode = 0;
      this.closeBytes = 0;
      this.state = CONTROL_PAYLOAD;
      return true;
    }
    this.state = DATA_PAYLOAD; // set before calling out: the sink may destroy the reader
    if (this.opcode !== OP_CONTINUATION) this.startMessage();
    return this.state === DATA_PAYLOAD;
  }

  private startMessage(): void {
    this.inMessage = true;
    this.messageStart = this.frameStart;
    this.compressed = this.rsv1;
    this.wanted = this.maxMessageBytes > 0;
    this.delivered = 0;
    this.unmaskPiece = FIRST_UNMASK_BYTES;
    this.inflatedInMessage = 0;
    this.skipInflate = this.compressed && this.contextLost;
    if (this.skipInflate) this.wanted = false;
    if (this.compressed && this.inflater === null && !this.contextLost) this.inflater = new Inflater(this.windowBits);
    this.sink.onMessageStart(this.opcode === OP_BINARY);
  }

  private readDataPayload(): boolean {
    let n = Math.min(this.remaining, this.chunk.length - this.pos);
    if (n > 0) {
      const all = n;
      if (this.compressed) {
        n = this.inflatePayload(n);
        if (n < 0) return false;
      } else if (this.wanted) {
        this.deliverPayload(n);
        if (this.state !== DATA_PAYLOAD) return false;
      }
      this.pos += n;
      this.remaining -= n;
      this.maskPhase = (this.maskPhase + n) & 3;
      if (n < all) {
        this.yielded = true; // the slice ran out: resume() goes on from here
        return false;
      }
    }
    if (this.remaining > 0) return false;
    if (!this.fin) {
      this.state = FRAME_START;
      return true;
    }
    return this.endMessage();
  }

  /** Delivers the wanted prefix of the next `n` payload bytes; unmasks only that prefix. */
  private deliverPayload(n: number): void {
    let left = Math.min(n, this.maxMessageBytes - this.delivered);
    let offset = this.pos;
    if (!this.masked) {
      this.deliver(this.chunk, offset, offset + left);
      return;
    }
    let phase = this.maskPhase;
    while (left > 0 && this.wanted) {
      // Pieces grow from FIRST_UNMASK_BYTES: a sink that has what it needs after the first bytes
      // (a vsn 2 message's event) costs an unmask of those, not of the whole 16 KiB message.
      const piece = Math.min(left, this.unmaskPiece);
      this.deliver(this.unmask(offset, piece, phase), 0, piece);
      offset += piece;
      left -= piece;
      phase = (phase + piece) & 3;
      if (this.unmaskPiece < MAX_SCRATCH_BYTES) this.unmaskPiece *= 2;
    }
  }

  /**
   * Unmasks `n` (≤ MAX_SCRATCH_BYTES) chunk bytes from `offset` into the start of the scratch buffer
   * and returns that buffer; `phase` is their payload offset modulo 4. Copying first (native) and then
   * XORing a word at a time is several times faster than a byte loop.
   */
  private unmask(offset: number, n: number, phase: number): Buffer {
    if (SCRATCH.bytes.length < n) growScratch(n);
    const scratch = SCRATCH.bytes;
    const words = SCRATCH.words;
    this.chunk.copy(scratch, 0, offset, offset + n);
    const rotated = MASK_WORD_BYTES;
    for (let i = 0; i < 4; i++) rotated[i] = this.maskByte(phase + i);
    const word = MASK_WORD[0]!;
    const whole = n >>> 2;
    for (let i = 0; i < whole; i++) words[i]! ^= word;
    for (let i = whole << 2; i < n; i++) scratch[i]! ^= rotated[i & 3]!;
    return scratch;
  }

  /** Byte `i` (mod 4) of the masking key. */
  private maskByte(i: number): number {
    return (this.maskKey >>> (24 - 8 * (i & 3))) & 0xff;
  }

  private deliver(data: Buffer, start: number, end: number): void {
    this.delivered += end - start;
    if (!this.sink.onMessageData(data, start, end) || this.delivered >= this.maxMessageBytes) this.wanted = false;
  }

  /**
   * Inflates the next `n` payload bytes of a compressed message. A message nobody wants any more is
   * not even unmasked when its context is discarded at its end anyway (no_context_takeover), nor is
   * the rest of one past its inflate cap.
   * @returns the payload bytes used (less than `n` when the slice ran out), or -1 when the reader
   * failed or was destroyed
   */
  private inflatePayload(n: number): number {
    if (this.skipInflate || (!this.wanted && this.noContextTakeover)) return n;
    if (!this.masked) {
      const reached = this.inflate(this.chunk, this.pos, this.pos + n, true);
      return reached < 0 ? -1 : reached - this.pos;
    }
    let offset = this.pos;
    let left = n;
    let phase = this.maskPhase;
    while (left > 0 && !this.skipInflate) {
      // The inflater takes input in any piece size: no need to grow the scratch for it.
      const piece = Math.min(left, Math.max(SCRATCH.bytes.length, MIN_SCRATCH_BYTES));
      const reached = this.inflate(this.unmask(offset, piece, phase), 0, piece, true);
      if (reached < 0) return -1;
      offset += reached;
      left -= reached;
      phase = (phase + reached) & 3;
      // The scratch is shared: a resume unmasks again from the chunk, at the piece's new start.
      if (reached < piece) return n - left;
    }
    return n;
  }

  /**
   * Runs the inflater over `input[start, end)`, delivering each stretch of output while wanted. With
   * `mayYield`, stops early when the slice is spent while input remains; output the inflater can make
   * from input already taken (at most a match or two) is always drained first.
   * @returns the input position reached, or -1 when the reader failed or was destroyed
   */
  private inflate(input: Buffer, start: number, end: number, mayYield: boolean): number {
    const inflater = this.inflater!;
    let pos = start;
    for (;;) {
      pos = inflater.write(input, pos, end);
      if (inflater.error !== null) {
        this.fail("WS_ERR_INVALID_DEFLATE_DATA", inflater.error);
        return -1;
      }
      const full = inflater.full;
      const produced = inflater.outEnd - inflater.outStart;
      if (this.wanted && produced > 0) {
        const stop = Math.min(inflater.outEnd, inflater.outStart + this.maxMessageBytes - this.delivered);
        this.deliver(inflater.ring, inflater.outStart, stop);
        if (this.state >= CLOSED) return -1;
      }
      inflater.release();
      this.inflatedInMessage += produced;
      this.sliceLeft -= produced;
      this.inflateBudget?.spend(produced);
      if (pos === end && !full) return pos;
      if (this.inflatedInMessage > this.maxInflatedMessageBytes) {
        this.stopInflating();
        return end;
      }
      if (mayYield && pos < end && (this.sliceLeft <= 0 || (this.inflateBudget !== null && this.inflateBudget.available <= 0))) return pos;
    }
  }

  /**
   * The current message passed its inflate cap: the rest of it is skipped. Without context takeover
   * the inflater starts afresh at the next message; with it, the window cannot be kept without
   * inflating everything, so it is dropped, and so is every later compressed message of this direction.
   */
  private stopInflating(): void {
    this.skipInflate = true;
    this.wanted = false;
    if (!this.noContextTakeover) {
      this.contextLost = true;
      this.inflater = null;
    }
    this.onUninspected?.(this.contextLost);
  }

  private endMessage(): boolean {
    if (this.compressed) {
      if (this.skipInflate) {
        if (this.contextLost) {
          if (this.inflatedInMessage === 0) this.onUninspected?.(true); // skipped whole: the window was gone
        } else {
          this.inflater!.reset();
        }
      } else {
        const inflater = this.inflater!;
        const skipped = !this.wanted && this.noContextTakeover;
        if (!skipped && this.inflate(DEFLATE_TAIL, 0, DEFLATE_TAIL.length, false) < 0) return false;
        if (this.skipInflate) return this.endMessage(); // the tail's last output passed the cap
        inflater.endMessage(this.noContextTakeover);
      }
    }
    this.inMessage = false;
    this.state = FRAME_START;
    this.sink.onMessageEnd();
    return this.state === FRAME_START;
  }

  private readControlPayload(): boolean {
    const n = Math.min(this.remaining, this.chunk.length - this.pos);
    if (this.opcode === OP_CLOSE) this.collectCloseCode(n);
    this.pos += n;
    this.remaining -= n;
    this.maskPhase = (this.maskPhase + n) & 3;
    if (this.remaining > 0) return false;
    if (this.opcode !== OP_CLOSE) {
      this.state = FRAME_START; // ping and pong carry nothing the tap needs
      return true;
    }
    return this.finishClose();
  }

  /** The close code is the first two payload bytes, which may arrive in separate chunks. */
  private collectCloseCode(n: number): void {
    for (let i = 0; i < n && this.closeBytes < 2; i++) {
      let byte = this.chunk[this.pos + i]!;
      if (this.masked) byte ^= this.maskByte(this.maskPhase + i);
      this.closeCode = (this.closeCode << 8) | byte;
      this.closeBytes++;
    }
  }

  private finishClose(): boolean {
    const code = this.payloadLength === 0 ? undefined : this.closeCode;
    if (code !== undefined && !isValidCloseCode(code)) {
      return this.fail("WS_ERR_INVALID_CLOSE_CODE", `invalid status code ${code}`);
    }
    // A peer sends nothing after its close frame (RFC 6455 §5.5.1); the window is no longer needed.
    this.state = CLOSED;
    this.inflater = null;
    this.sink.onClose(code);
    return false;
  }

  private fail(code: FrameErrorCode, detail: string, cause?: unknown): false {
    this.state = FAILED;
    this.wanted = false;
    this.inflater = null;
    try {
      this.sink.onError(createFrameError(code, detail, cause));
    } catch {
      // push() must not throw, and a sink that fails on its own error report has no better outlet.
    }
    return false;
  }
}

/** Close codes a peer may send (RFC 6455 §7.4, the IANA registry up to 1014, and 3000-4999). */
function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * The unmasking scratch, shared by every reader: unmasked bytes are only valid during the sink
 * call that receives them and parsing is synchronous, so one buffer serves all connections
 * (an idle connection holds none). It grows by doubling up to MAX_SCRATCH_BYTES.
 */
const SCRATCH = { bytes: Buffer.alloc(0), words: new Uint32Array(0) };
/** The mask rotated to the current phase, as one native-endian word for 4-bytes-at-a-time XOR. */
const MASK_WORD = new Uint32Array(1);
const MASK_WORD_BYTES = new Uint8Array(MASK_WORD.buffer);

function growScratch(bytes: number): void {
  let size = Math.max(MIN_SCRATCH_BYTES, SCRATCH.bytes.length);
  while (size < bytes) size *= 2;
  const memory = new ArrayBuffer(size); // own memory, so the word view is aligned
  SCRATCH.bytes = Buffer.from(memory);
  SCRATCH.words = new Uint32Array(memory);
}
