// Decodes what a server sends on one websocket connection: the HTTP head, then unmasked frames,
// inflating permessage-deflate messages with one raw-deflate context kept across messages.
import { constants, createInflateRaw } from "node:zlib";
import type { InflateRaw } from "node:zlib";
import { normalizeHeaders } from "./trace.js";
import type { WireItem } from "./trace.js";

const DEFLATE_TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

export class ServerFrameDecoder {
  /** Decoded items, in arrival order. */
  readonly items: WireItem[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private headDone = false;
  private upgraded = false;
  private inflater: InflateRaw | undefined;
  private fragments: Frame[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly conn: number) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (!this.headDone && !this.readHead()) return;
    if (!this.upgraded) return;
    for (let frame = this.readFrame(); frame !== undefined; frame = this.readFrame()) {
      const f = frame;
      this.chain = this.chain.then(() => this.onFrame(f));
    }
  }

  /** Resolves once every frame received so far has been decoded (inflation is async). */
  settled(): Promise<void> {
    return this.chain;
  }

  close(): void {
    this.inflater?.close();
  }

  private readHead(): boolean {
    const end = this.buf.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const lines = this.buf.toString("latin1", 0, end).split("\r\n");
    this.buf = this.buf.subarray(end + 4);
    this.headDone = true;
    const startLine = lines[0] ?? "";
    this.upgraded = startLine.startsWith("HTTP/1.1 101");
    this.items.push({ conn: this.conn, kind: "http", startLine, headers: normalizeHeaders(lines.slice(1)) });
    return true;
  }

  private readFrame(): Frame | undefined {
    const b = this.buf;
    if (b.length < 2) return undefined;
    const b0 = b[0] ?? 0;
    const b1 = b[1] ?? 0;
    let len = b1 & 0x7f;
    let pos = 2;
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = b.readUInt16BE(2);
      pos = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      len = Number(b.readBigUInt64BE(2));
      pos = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const maskAt = pos;
    if (masked) pos += 4;
    if (b.length < pos + len) return undefined;
    const payload = Buffer.from(b.subarray(pos, pos + len));
    if (masked) {
      // Servers never mask; handled so a broken server shows up as a diff, not a hang.
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (b[maskAt + (i & 3)] ?? 0);
    }
    this.buf = b.subarray(pos + len);
    return { fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, payload };
  }

  private async onFrame(frame: Frame): Promise<void> {
    if (frame.opcode >= 8) {
      this.items.push(this.controlItem(frame));
      return;
    }
    this.fragments.push(frame);
    if (!frame.fin) return;
    const [first] = this.fragments;
    const data = Buffer.concat(this.fragments.map((f) => f.payload));
    this.fragments = [];
    if (first === undefined) return;
    const compressed = first.rsv1;
    const message = compressed ? await this.inflate(data) : data;
    if (first.opcode === 1) this.items.push({ conn: this.conn, kind: "text", compressed, text: message.toString("utf8") });
    else this.items.push({ conn: this.conn, kind: "binary", compressed, base64: message.toString("base64") });
  }

  private controlItem(frame: Frame): WireItem {
    if (frame.opcode !== 8) return { conn: this.conn, kind: "control", opcode: frame.opcode, base64: frame.payload.toString("base64") };
    const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : null;
    return { conn: this.conn, kind: "close", code, reason: frame.payload.subarray(2).toString("utf8") };
  }

  private inflate(data: Buffer): Promise<Buffer> {
    this.inflater ??= createInflateRaw({ windowBits: 15 });
    const inflater = this.inflater;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const onData = (chunk: Buffer): void => {
        chunks.push(chunk);
      };
      inflater.on("data", onData);
      inflater.once("error", reject);
      inflater.write(Buffer.concat([data, DEFLATE_TRAILER]));
      inflater.flush(constants.Z_SYNC_FLUSH, () => {
        inflater.off("data", onData);
        inflater.off("error", reject);
        resolve(Buffer.concat(chunks));
      });
    });
  }
}
