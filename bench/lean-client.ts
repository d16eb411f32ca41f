// A lean Phoenix vsn 2.0.0 client on `ws` for the load loops: one channel per socket, pushes
// built by string concatenation and replies recognised by their first and last bytes, so the
// load generator spends little CPU per round trip on a 2-core machine and the proxies get it.
// (The idle phase uses the official phoenix JS client; see load-worker.ts.)
import WebSocket from "ws";

/** The join_ref of the socket's one channel; replies to its pushes start with `["1","`. */
const JOIN_REF = "1";
const JOIN_MSG_REF = 1;
const REPLY_PREFIX = Buffer.from(`["${JOIN_REF}","`);
const QUOTE = 0x22;
const PHX_REPLY = Buffer.from(`"phx_reply"`);
const OK_TAIL = Buffer.from(`"status":"ok"}]`);

/** A `{"body":"xxx…"}` object of exactly `bytes` bytes of JSON (at least 11). */
export function echoPayloadJson(bytes: number): string {
  const overhead = `{"body":""}`.length;
  return `{"body":"${"x".repeat(Math.max(0, bytes - overhead))}"}`;
}

/**
 * Reads the ref of a vsn 2 reply to this socket's channel, or -1 when the frame is anything
 * else (a broadcast, another channel's message, an error reply). `ok` is set on the socket.
 */
function parseReplyRef(data: Buffer, topicBytes: number): { ref: number; ok: boolean } {
  if (data.length < REPLY_PREFIX.length + 2 || data.compare(REPLY_PREFIX, 0, REPLY_PREFIX.length, 0, REPLY_PREFIX.length) !== 0) {
    return { ref: -1, ok: false };
  }
  let ref = 0;
  let i = REPLY_PREFIX.length;
  for (; i < data.length && data[i] !== QUOTE; i++) {
    const digit = data[i]! - 0x30;
    if (digit < 0 || digit > 9) return { ref: -1, ok: false };
    ref = ref * 10 + digit;
  }
  // `","<topic>","phx_reply"` follows the ref's closing quote.
  const eventAt = i + 4 + topicBytes + 1;
  if (data.compare(PHX_REPLY, 0, PHX_REPLY.length, eventAt, eventAt + PHX_REPLY.length) !== 0) return { ref: -1, ok: false };
  const ok = data.length >= OK_TAIL.length && data.compare(OK_TAIL, 0, OK_TAIL.length, data.length - OK_TAIL.length) === 0;
  return { ref, ok };
}

/** One WebSocket joined to one topic; pushes `echo` and reports each reply. */
export class LeanPhoenixSocket {
  /** Called for every reply to a push (not the join); `ok` is false for an error reply. */
  onReply: (ref: number, ok: boolean) => void = () => undefined;
  /** Called for frames that are not replies to this channel. */
  onOther: () => void = () => undefined;
  /** Called once when the socket closes or fails. */
  onGone: (reason: string) => void = () => undefined;
  private nextRef = JOIN_MSG_REF + 1;
  private readonly pushHead: string;
  private readonly topicBytes: number;
  private gone = false;

  private constructor(
    private readonly ws: WebSocket,
    readonly topic: string,
  ) {
    this.pushHead = `["${JOIN_REF}","`;
    this.topicBytes = Buffer.byteLength(JSON.stringify(topic)) - 2;
    ws.on("message", this.onMessage);
    ws.on("close", (code) => this.markGone(`closed ${code}`));
    ws.on("error", (err) => this.markGone(err.message));
  }

  /** Opens `baseUrl/socket/websocket?vsn=2.0.0` and joins `topic`; rejects on error, a refused join or timeout. */
  static open(baseUrl: string, topic: string, timeoutMs: number): Promise<LeanPhoenixSocket> {
    const url = `${baseUrl.replace(/^http/, "ws")}/socket/websocket?vsn=2.0.0`;
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`join ${topic} timed out after ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        ws.removeAllListeners();
        ws.on("error", () => undefined);
        ws.terminate();
        reject(err);
      };
      ws.once("error", fail);
      ws.once("unexpected-response", (_req, res) => fail(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      ws.once("open", () => ws.send(JSON.stringify([JOIN_REF, String(JOIN_MSG_REF), topic, "phx_join", {}])));
      ws.once("message", (raw: WebSocket.RawData) => {
        const data = raw as Buffer;
        const reply = parseReplyRef(data, Buffer.byteLength(JSON.stringify(topic)) - 2);
        if (reply.ref !== JOIN_MSG_REF || !reply.ok) return fail(new Error(`join ${topic} refused: ${data.toString().slice(0, 200)}`));
        clearTimeout(timer);
        ws.removeAllListeners();
        resolve(new LeanPhoenixSocket(ws, topic));
      });
    });
  }

  /** Sends `echo` with `payloadJson` (a JSON object text) and returns the push's ref. */
  push(payloadJson: string): number {
    const ref = this.nextRef++;
    this.ws.send(`${this.pushHead}${ref}","${this.topic}","echo",${payloadJson}]`);
    return ref;
  }

  get isOpen(): boolean {
    return !this.gone && this.ws.readyState === WebSocket.OPEN;
  }

  /** Close handshake; resolves when closed (or cut after `graceMs`). */
  close(graceMs = 3000): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.ws.terminate(), graceMs);
      this.ws.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.gone = true;
      this.ws.close(1000);
    });
  }

  private readonly onMessage = (raw: WebSocket.RawData): void => {
    // binaryType is "nodebuffer" (the default): text frames arrive as one Buffer.
    const reply = parseReplyRef(raw as Buffer, this.topicBytes);
    if (reply.ref < 0) this.onOther();
    else this.onReply(reply.ref, reply.ok);
  };

  private markGone(reason: string): void {
    if (this.gone) return;
    this.gone = true;
    this.onGone(reason);
  }
}
