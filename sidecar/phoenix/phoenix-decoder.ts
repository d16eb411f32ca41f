import type { FrameError, MessageSink } from "../ws/frame-reader.js";
import { BinaryMessageScanner } from "./binary-scanner.js";
import { JsonMessageScanner } from "./json-scanner.js";
import type { PhoenixMessage, PhoenixVsn } from "./message.js";

/** Receives what one direction of a socket carried, decoded. */
export interface PhoenixMessageHandler {
  /** One Phoenix message. `msg` is reused for the next message: copy what you keep. */
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
 * FrameReader as its sink; one per direction per connection, so the scanners' fixed buffers
 * are reused for every message.
 */
export class PhoenixDecoder implements MessageSink {
  private binary = false;
  private readonly json = new JsonMessageScanner();
  private readonly bin = new BinaryMessageScanner();
  private readonly msg: PhoenixMessage = { joinRef: null, ref: null, topic: "", event: "", status: null };

  constructor(
    private readonly vsn: PhoenixVsn,
    private readonly fromClient: boolean,
    private readonly handler: PhoenixMessageHandler,
  ) {}

  onMessageStart(binary: boolean): void {
    this.binary = binary;
    if (binary) this.bin.reset(this.fromClient);
    else this.json.reset(this.vsn);
  }

  onMessageData(data: Buffer): boolean {
    return this.binary ? this.bin.write(data) : this.json.write(data);
  }

  onMessageEnd(): void {
    const ok = this.binary ? this.bin.finish(this.msg) : this.json.finish(this.msg);
    if (ok) this.handler.onPhoenixMessage(this.msg, this.fromClient);
    else this.handler.onUnparsed(this.fromClient);
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
