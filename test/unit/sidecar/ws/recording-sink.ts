// A MessageSink that records what it is told, checking the call order the reader promises.
import { FrameReader, type FrameError, type FrameReaderOptions, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";

export type SinkEvent =
  | { kind: "message"; binary: boolean; data: Buffer }
  | { kind: "close"; code: number | undefined }
  | { kind: "error"; code: string };

/** Decides, per delivered piece, whether the sink wants more of the current message. */
export type WantPolicy = (messageIndex: number, deliveredBytes: number) => boolean;

export class RecordingSink implements MessageSink {
  readonly events: SinkEvent[] = [];
  /** Problems with the order of calls (each would be a reader bug). */
  readonly violations: string[] = [];
  private pieces: Buffer[] | null = null;
  private binary = false;
  private messageIndex = 0;
  private deliveredBytes = 0;
  private finished = false;

  constructor(private readonly want: WantPolicy = () => true) {}

  onMessageStart(binary: boolean): void {
    this.check("onMessageStart");
    if (this.pieces !== null) this.violations.push("onMessageStart inside a message");
    this.pieces = [];
    this.binary = binary;
    this.deliveredBytes = 0;
  }

  onMessageData(data: Buffer, start: number, end: number): boolean {
    this.check("onMessageData");
    if (this.pieces === null) this.violations.push("onMessageData outside a message");
    if (end <= start) this.violations.push("empty onMessageData");
    if (start < 0 || end > data.length) this.violations.push("onMessageData range outside its buffer");
    this.pieces?.push(Buffer.from(data.subarray(start, end))); // scratch or the chunk: copy it now
    this.deliveredBytes += end - start;
    return this.want(this.messageIndex, this.deliveredBytes);
  }

  onMessageEnd(): void {
    this.check("onMessageEnd");
    if (this.pieces === null) this.violations.push("onMessageEnd outside a message");
    this.events.push({ kind: "message", binary: this.binary, data: Buffer.concat(this.pieces ?? []) });
    this.pieces = null;
    this.messageIndex++;
  }

  onClose(code: number | undefined): void {
    this.check("onClose");
    this.events.push({ kind: "close", code });
    this.finished = true;
  }

  onError(err: FrameError): void {
    this.check("onError");
    this.events.push({ kind: "error", code: err.code });
    this.finished = true;
  }

  private check(call: string): void {
    if (this.finished) this.violations.push(`${call} after close or error`);
  }
}

/**
 * Feeds `chunks` to a new reader, resuming each until it is parsed (as the proxy does, a turn of
 * the event loop later), and returns what its sink saw; fails on order violations.
 */
export function readAll(chunks: readonly Buffer[], options: FrameReaderOptions, want?: WantPolicy): SinkEvent[] {
  const sink = new RecordingSink(want);
  const reader = new FrameReader(sink, options);
  for (const chunk of chunks) {
    let done = reader.push(chunk);
    while (!done) done = reader.resume();
  }
  reader.destroy();
  if (sink.violations.length > 0) throw new Error(`sink call order: ${sink.violations.join("; ")}`);
  return sink.events;
}

/** `bytes` cut at the given ascending offsets. */
export function splitAt(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  for (const offset of offsets) {
    chunks.push(bytes.subarray(start, offset));
    start = offset;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/** `bytes` one byte per chunk. */
export function byteByByte(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
  return chunks;
}

/** Readable summary for assertion diffs: messages as text or hex, plus close and error events. */
export function summarize(events: readonly SinkEvent[]): string[] {
  return events.map((e) => {
    if (e.kind === "message") return `${e.binary ? "binary" : "text"}(${e.data.length}):${e.data.toString(e.binary ? "hex" : "utf8")}`;
    if (e.kind === "close") return `close:${e.code}`;
    return `error:${e.code}`;
  });
}
