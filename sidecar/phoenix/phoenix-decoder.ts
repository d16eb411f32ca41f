import type { FrameError, MessageSink } from "../ws/frame-reader.js";
import { BinaryMessageScanner } from "./binary-scanner.js";
import { JsonMessageScanner } from "./json-scanner.js";
import type { PhoenixMessage, PhoenixVsn } from "./message.js";

/** Receives what one direction of a socket carried, decoded. */
export interface PhoenixMessageHandler {
  /** One Phoenix message. `msg` is shared and reused for the next message: copy what you keep. */
  onPhoenixMessage(msg: PhoenixMessage, fromClient: boolean): void;
  /** A data message that is not a Phoenix message we can read; it was relayed untouched. */
  onUnparsed(fromClient: boolean): void;
  /** A close frame went by. */
  onCloseFrame(fromClient: boolean, code: number | undefined): void;
  /** The direction broke the WebSocket framing; it is no longer parsed (bytes still flow). */
  onStreamError(fromClient: boolean): void;
}

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

  constructor(
    private readonly vsn: PhoenixVsn,
    private readonly fromClient: boolean,
    private readonly handler: PhoenixMessageHandler,
  ) {}

  onMessageStart(binary: boolean): void {
    this.binary = binary;
    if (binary) (this.bin ??= BIN_POOL.pop() ?? new BinaryMessageScanner()).reset(this.fromClient);
    else (this.json ??= JSON_POOL.pop() ?? new JsonMessageScanner()).reset(this.vsn);
  }

  onMessageData(data: Buffer): boolean {
    return this.binary ? this.bin!.write(data) : this.json!.write(data);
  }

  onMessageEnd(): void {
    const ok = this.binary ? this.bin!.finish(MESSAGE) : this.json!.finish(MESSAGE);
    this.release();
    if (ok) this.handler.onPhoenixMessage(MESSAGE, this.fromClient);
    else this.handler.onUnparsed(this.fromClient);
  }

  /** Returns any lent scanner to the pool (at message end, and when the connection closes). */
  release(): void {
    if (this.json !== null && JSON_POOL.length < MAX_POOLED) JSON_POOL.push(this.json);
    if (this.bin !== null && BIN_POOL.length < MAX_POOLED) BIN_POOL.push(this.bin);
    this.json = this.bin = null;
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
const MAX_POOLED = 64;
/**
 * The decoded message, shared by every decoder: handlers consume it synchronously and copy
 * what they keep (its fields are fresh strings), so one object serves all connections.
 */
const MESSAGE: PhoenixMessage = { joinRef: null, ref: null, topic: "", event: "", status: null };
