import type { FrameError, MessageSink } from "../ws/frame-reader.js";
import { BinaryMessageScanner } from "./binary-scanner.js";
import { JsonMessageScanner } from "./json-scanner.js";
import { EVENT_CLOSE, EVENT_ERROR, EVENT_JOIN, EVENT_LEAVE, EVENT_REPLY, OCCUPANCY_TOPIC, VSN_2, type PhoenixMessage, type PhoenixVsn } from "./message.js";

/** Receives what one direction of a socket carried, decoded. */
export interface PhoenixMessageHandler {
  /** One Phoenix message. `msg` is shared and reused for the next message: copy what you keep. */
  onPhoenixMessage(msg: PhoenixMessage, fromClient: boolean): void;
  /** A data message that is not a Phoenix message we can read; it was relayed untouched. */
  onUnparsed(fromClient: boolean): void;
  /**
   * The unparsed message just reported had a topic, event or ref longer than the scanner
   * reads, so whether it was a join cannot be told (Phoenix has no such limit).
   */
  onUndecided?(fromClient: boolean): void;
  /** A Phoenix message the ledger has no use for (a push, a broadcast, an unawaited reply) ended. */
  onOtherMessage(fromClient: boolean): void;
  /** Whether a reply could matter now (a join or leave waits for one); else replies are not read. */
  awaitsReplies(): boolean;
  /** A close frame went by. */
  onCloseFrame(fromClient: boolean, code: number | undefined): void;
  /** The direction broke the WebSocket framing; it is no longer parsed (bytes still flow). */
  onStreamError(fromClient: boolean): void;
  // --- virtual topic (issue 17) ---
  /**
   * Whether client messages on {@link OCCUPANCY_TOPIC} are served by the sidecar: then each of
   * them, whatever its event, goes to {@link onVirtualMessage} instead of the other callbacks.
   */
  servesVirtualTopic?(): boolean;
  /** A client message on the virtual topic, with its text (its first {@link MAX_VIRTUAL_MESSAGE_BYTES} bytes; null when binary). */
  onVirtualMessage?(msg: PhoenixMessage, text: string | null): void;
}

/** Bytes of a client text message kept while the virtual topic is served: its join params are read from them. */
export const MAX_VIRTUAL_MESSAGE_BYTES = 4096;

/**
 * Turns the WebSocket messages of one direction into Phoenix messages. Plugged into a
 * FrameReader as its sink, one per direction per connection. The scanners and their capture
 * buffers (a few KiB) are lent from a shared pool for the length of one message, so an idle
 * connection holds none; a connection holds one only while a message is split across reads.
 */
export class PhoenixDecoder implements MessageSink {
  private binary = false;
  private json: JsonMessageScanner | null = null;
  private bin: BinaryMessageScanner | null = null;
  /** While the virtual topic is served: the client message's first bytes (lent from a pool), and their length. */
  private capture: Buffer | null = null;
  private captured = 0;
  /** The scanner wants more bytes of the current text message. */
  private scanning = false;

  constructor(
    private readonly vsn: PhoenixVsn,
    private readonly fromClient: boolean,
    private readonly handler: PhoenixMessageHandler,
  ) {}

  onMessageStart(binary: boolean): void {
    this.binary = binary;
    // Only the vsn 2 serializer has a binary layout; a vsn 1 socket's binary frames are not Phoenix messages.
    if (binary && this.vsn !== VSN_2) return;
    if (binary) (this.bin ??= BIN_POOL.pop() ?? new BinaryMessageScanner()).reset(this.fromClient);
    else (this.json ??= JSON_POOL.pop() ?? new JsonMessageScanner()).reset(this.vsn, this.fromClient || this.handler.awaitsReplies());
    this.scanning = !binary;
    if (!binary && this.fromClient && this.handler.servesVirtualTopic?.() === true) {
      this.capture ??= CAPTURE_POOL.pop() ?? Buffer.allocUnsafe(MAX_VIRTUAL_MESSAGE_BYTES + 1);
      this.captured = 0;
    }
  }

  onMessageData(data: Buffer, start = 0, end = data.length): boolean {
    if (this.binary) return this.bin !== null && this.bin.write(data, start, end);
    if (this.scanning) {
      this.scanning = this.json!.write(data, start, end);
      // vsn 2: the scan stops at the payload with the topic known; the rest of any other topic's message is skipped.
      if (!this.scanning && this.capture !== null && !this.json!.topicIs(OCCUPANCY_TOPIC_BYTES)) this.dropCapture();
    }
    if (this.capture === null) return this.scanning;
    // One byte past the cap marks the message as too long to read.
    this.captured += data.copy(this.capture, this.captured, start, Math.min(end, start + this.capture.length - this.captured));
    return this.scanning || this.captured < this.capture.length;
  }

  onMessageEnd(): void {
    let outcome: number;
    if (this.binary) outcome = this.bin?.finish(MESSAGE) === true ? RELEVANT : UNPARSED;
    else outcome = this.endJson(this.json!);
    const undecided = !this.binary && this.json!.undecided;
    if (outcome === VIRTUAL || (outcome === RELEVANT && this.binary && this.isVirtual())) {
      // A message past the cap comes cut at it (its JSON then does not parse); a binary one comes as null.
      const text = this.capture === null ? null : this.capture.toString("utf8", 0, Math.min(this.captured, MAX_VIRTUAL_MESSAGE_BYTES));
      this.release();
      this.handler.onVirtualMessage!(MESSAGE, text);
      return;
    }
    this.release();
    if (outcome === RELEVANT) this.handler.onPhoenixMessage(MESSAGE, this.fromClient);
    else if (outcome === OTHER) this.handler.onOtherMessage(this.fromClient);
    else this.handler.onUnparsed(this.fromClient);
    if (undecided) this.handler.onUndecided?.(this.fromClient);
  }

  /**
   * Only channel lifecycle events are decoded into strings; the bulk of the traffic (pushes,
   * broadcasts, replies nobody awaits) is recognised by comparing bytes and left there.
   */
  private endJson(json: JsonMessageScanner): number {
    if (!json.complete()) return UNPARSED;
    if (this.capture !== null && json.topicIs(OCCUPANCY_TOPIC_BYTES) && json.finish(MESSAGE)) return VIRTUAL;
    if (!json.eventIsOneOf(this.fromClient ? CLIENT_LIFECYCLE : SERVER_LIFECYCLE)) return OTHER;
    if (!this.fromClient && !this.handler.awaitsReplies() && json.eventIsOneOf(REPLY)) return OTHER;
    json.finish(MESSAGE);
    return RELEVANT;
  }

  private dropCapture(): void {
    if (this.capture !== null && CAPTURE_POOL.length < MAX_POOLED) CAPTURE_POOL.push(this.capture);
    this.capture = null;
  }

  /** A binary client message decoded onto the virtual topic while it is served (not readable: it is refused). */
  private isVirtual(): boolean {
    return this.fromClient && MESSAGE.topic === OCCUPANCY_TOPIC && this.handler.servesVirtualTopic?.() === true;
  }

  /** Returns any lent scanner to the pool (at message end, and when the connection closes). */
  release(): void {
    if (this.json !== null && JSON_POOL.length < MAX_POOLED) JSON_POOL.push(this.json);
    if (this.bin !== null && BIN_POOL.length < MAX_POOLED) BIN_POOL.push(this.bin);
    this.json = this.bin = null;
    this.dropCapture();
  }

  onClose(code: number | undefined): void {
    this.handler.onCloseFrame(this.fromClient, code);
  }

  onError(_err: FrameError): void {
    // The reader stops parsing this direction; the bytes keep flowing untouched.
    this.handler.onUnparsed(this.fromClient);
    this.handler.onStreamError(this.fromClient);
  }
}

/** Scanners not lent out; bounded, so a burst of split messages does not pin memory for good. */
const JSON_POOL: JsonMessageScanner[] = [];
const BIN_POOL: BinaryMessageScanner[] = [];
const CAPTURE_POOL: Buffer[] = [];
const MAX_POOLED = 64;
/**
 * The decoded message, shared by every decoder: handlers consume it synchronously and copy
 * what they keep (its fields are fresh strings), so one object serves all connections.
 */
const MESSAGE: PhoenixMessage = { joinRef: null, ref: null, topic: "", event: "", status: null };

const RELEVANT = 0;
const OTHER = 1;
const UNPARSED = 2;
/** A client message on the virtual topic (issue 17). */
const VIRTUAL = 3;
const OCCUPANCY_TOPIC_BYTES = Buffer.from(OCCUPANCY_TOPIC);
const CLIENT_LIFECYCLE = [EVENT_JOIN, EVENT_LEAVE].map((e) => Buffer.from(e));
const SERVER_LIFECYCLE = [EVENT_REPLY, EVENT_CLOSE, EVENT_ERROR].map((e) => Buffer.from(e));
const REPLY = [Buffer.from(EVENT_REPLY)];
