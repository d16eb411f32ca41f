import { EVENT_REPLY, type PhoenixMessage } from "./message.js";

/**
 * Reads the header of a Phoenix vsn 2 binary frame (opcode 2), fed in pieces. The layout is
 * a kind byte, one u8 size per header field, then the fields, then the raw payload, which is
 * never looked at:
 *
 * - kind 0 from the client (push): join_ref, ref, topic, event
 * - kind 0 from the server (push): join_ref, topic, event (no ref)
 * - kind 1 (reply): join_ref, ref, topic, status
 * - kind 2 (broadcast): topic, event
 *
 * The whole header is at most 1 + 4 + 4 × 255 bytes, so it is gathered into a fixed buffer.
 */
export class BinaryMessageScanner {
  private readonly header = Buffer.alloc(1 + 4 + 4 * 255);
  private length = 0;
  /** Total header length once the size bytes are known, else -1. */
  private needed = -1;
  private fromClient = false;
  private broken = false;

  reset(fromClient: boolean): void {
    this.fromClient = fromClient;
    this.length = 0;
    this.needed = -1;
    this.broken = false;
  }

  /** Reads `data[start, end)`; returns false once the header is complete (or the kind is unknown). */
  write(data: Buffer, start = 0, end = data.length): boolean {
    let i = start;
    while (i < end) {
      if (this.needed >= 0 && this.length >= this.needed) return false;
      const want = this.needed >= 0 ? this.needed - this.length : 1 + this.sizeCount() - this.length;
      const n = Math.min(want, end - i);
      data.copy(this.header, this.length, i, i + n);
      this.length += n;
      i += n;
      if (this.needed < 0) this.computeNeeded();
      if (this.broken) return false;
    }
    return !(this.needed >= 0 && this.length >= this.needed);
  }

  finish(out: PhoenixMessage): boolean {
    if (this.broken || this.needed < 0 || this.length < this.needed) return false;
    const kind = this.header[0];
    const sizes = this.sizeCount();
    let at = 1 + sizes;
    const field = (index: number): string => {
      const n = this.header[1 + index]!;
      const s = this.header.toString("utf8", at, at + n);
      at += n;
      return s;
    };
    out.status = null;
    if (kind === KIND_PUSH && this.fromClient) {
      // Phoenix keeps a client's fields as they are: an empty join_ref is "", echoed as "".
      out.joinRef = field(0);
      out.ref = field(1);
      out.topic = field(2);
      out.event = field(3);
    } else if (kind === KIND_PUSH) {
      out.joinRef = nullIfEmpty(field(0));
      out.ref = null;
      out.topic = field(1);
      out.event = field(2);
    } else if (kind === KIND_REPLY) {
      out.joinRef = nullIfEmpty(field(0));
      out.ref = field(1);
      out.topic = field(2);
      out.event = EVENT_REPLY;
      out.status = field(3);
    } else {
      out.joinRef = null;
      out.ref = null;
      out.topic = field(0);
      out.event = field(1);
    }
    return true;
  }

  private sizeCount(): number {
    const kind = this.header[0];
    if (this.length === 0) return 0;
    if (kind === KIND_BROADCAST) return 2;
    if (kind === KIND_PUSH && !this.fromClient) return 3;
    if (kind === KIND_PUSH || kind === KIND_REPLY) return 4;
    return -1;
  }

  private computeNeeded(): void {
    const sizes = this.sizeCount();
    if (this.length === 0) return;
    if (sizes < 0) {
      this.broken = true;
      return;
    }
    if (this.length < 1 + sizes) return;
    let total = 1 + sizes;
    for (let k = 1; k <= sizes; k++) total += this.header[k]!;
    this.needed = total;
  }
}

function nullIfEmpty(s: string): string | null {
  return s.length === 0 ? null : s;
}

const KIND_PUSH = 0;
const KIND_REPLY = 1;
const KIND_BROADCAST = 2;
