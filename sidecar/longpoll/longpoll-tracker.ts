import type http from "node:http";
import { KIND_LONGPOLL, type ChannelLedger, type SocketChannels } from "../ledger/channel-ledger.js";
import { JsonMessageScanner } from "../phoenix/json-scanner.js";
import { vsnFromUrl, type PhoenixMessage, type PhoenixVsn } from "../phoenix/message.js";

/** Bodies past this size are relayed but not read (counted unparsed). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const SWEEP_INTERVAL_MS = 1000;

export interface UnparsedObserver {
  onUnparsed(fromClient: boolean): void;
}

interface Session {
  channels: SocketChannels;
  vsn: PhoenixVsn;
  lastSeenMs: number;
}

/**
 * Meters Phoenix long-poll sessions (`<path>/longpoll`), which the JS client falls back to
 * when WebSockets fail. A session is its token: it starts with the server's first answer
 * (status 410 with a fresh token), its client→server messages are the POSTed batches, its
 * server→client messages the polled `messages`, and it ends when neither a request nor an
 * answer carried its token for the timeout, or when the server answers 410 to it. Phoenix
 * drops a session about two poll windows (2 × 10 s) after its last poll ended (see
 * phoenix-traces s10-longpoll-abandon-v2), hence the sidecar's 20 s default. Bodies are read as they are relayed, never delayed.
 */
export class LongPollTracker {
  private readonly sessions = new Map<string, Session>();
  private readonly scanner = new JsonMessageScanner();
  private readonly msg: PhoenixMessage = { joinRef: null, ref: null, topic: "", event: "", status: null };
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly ledger: ChannelLedger,
    private readonly timeoutMs: number,
    private readonly observer: UnparsedObserver,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  /** Whether a request path is a Phoenix long-poll endpoint. */
  static matches(url: string | undefined): boolean {
    if (url === undefined) return false;
    const q = url.indexOf("?");
    return (q < 0 ? url : url.slice(0, q)).endsWith("/longpoll");
  }

  /** Live sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /** Reads a long-poll request as it is forwarded; POST bodies carry client messages. */
  observeRequest(req: http.IncomingMessage): void {
    this.onRequestStart(req.url);
    if (req.method === "POST") collectBody(req, (body) => this.onRequestBody(req.url, body));
  }

  /** Reads the app's answer to a long-poll request as it is relayed back. */
  observeResponse(req: http.IncomingMessage, res: http.IncomingMessage): void {
    collectBody(res, (body) => this.onResponseBody(req.url, body));
  }

  /** A request named its session: the session is alive (or, unseen so far, starts now). */
  onRequestStart(url: string | undefined): void {
    const token = tokenOf(url);
    if (token !== null) this.touch(token, vsnFromUrl(url));
  }

  /** A POSTed batch of client messages; null when it was too large to read. */
  onRequestBody(url: string | undefined, body: Buffer | null): void {
    const token = tokenOf(url);
    const session = token === null ? undefined : this.sessions.get(token);
    if (body === null) this.observer.onUnparsed(true);
    else if (session !== undefined) this.readClientBatch(session, body);
  }

  /** The JSON document the app answered a long-poll request with; null when too large. */
  onResponseBody(url: string | undefined, body: Buffer | null): void {
    let doc: { status?: unknown; token?: unknown; messages?: unknown };
    try {
      if (body === null) throw new Error("body too large");
      doc = JSON.parse(body.toString("utf8")) as typeof doc;
    } catch {
      this.observer.onUnparsed(false);
      return;
    }
    if (typeof doc === "object" && doc !== null) this.onServerDocument(tokenOf(url), vsnFromUrl(url), doc);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const s of this.sessions.values()) s.channels.close();
    this.sessions.clear();
  }

  private onServerDocument(requestToken: string | null, vsn: PhoenixVsn, doc: { status?: unknown; token?: unknown; messages?: unknown }): void {
    if (doc.status === 410) {
      // The session the request named is gone; the token in the answer starts a new one.
      if (requestToken !== null) this.end(requestToken);
      if (typeof doc.token === "string") this.touch(doc.token, vsn);
      return;
    }
    const token = typeof doc.token === "string" ? doc.token : requestToken;
    const session = token === null ? undefined : this.sessions.get(token);
    if (session === undefined) return;
    session.lastSeenMs = this.now(); // a held poll that just ended is activity too
    if (!Array.isArray(doc.messages)) return;
    for (const encoded of doc.messages) {
      if (typeof encoded === "string" && this.scan(Buffer.from(encoded), session.vsn)) session.channels.onServerMessage(this.msg);
      else this.observer.onUnparsed(false);
    }
  }

  private readClientBatch(session: Session, body: Buffer): void {
    // vsn 2 clients post newline-delimited messages; vsn 1 clients post one JSON object.
    let start = 0;
    while (start < body.length) {
      let end = body.indexOf(0x0a, start);
      if (end < 0) end = body.length;
      const line = body.subarray(start, end);
      start = end + 1;
      if (line.length === 0) continue;
      if (this.scan(line, session.vsn)) session.channels.onClientMessage(this.msg);
      else this.observer.onUnparsed(true);
    }
  }

  private scan(text: Buffer, vsn: PhoenixVsn): boolean {
    this.scanner.reset(vsn);
    this.scanner.write(text);
    return this.scanner.finish(this.msg);
  }

  private touch(token: string, vsn: PhoenixVsn): void {
    const session = this.sessions.get(token);
    if (session !== undefined) {
      session.lastSeenMs = this.now();
      return;
    }
    this.sessions.set(token, { channels: this.ledger.openSocket(KIND_LONGPOLL), vsn, lastSeenMs: this.now() });
  }

  private end(token: string): void {
    const session = this.sessions.get(token);
    if (session === undefined) return;
    this.sessions.delete(token);
    session.channels.close();
  }

  /** Ends sessions that no request has named for the timeout. */
  sweep(): void {
    const deadline = this.now() - this.timeoutMs;
    for (const [token, s] of this.sessions) if (s.lastSeenMs < deadline) this.end(token);
  }
}

function tokenOf(url: string | undefined): string | null {
  const q = url?.indexOf("?") ?? -1;
  if (url === undefined || q < 0) return null;
  const token = new URLSearchParams(url.slice(q + 1)).get("token");
  return token === null || token === "" ? null : token;
}

/** Gathers a body beside whoever else consumes the stream; null when it exceeds the cap. */
function collectBody(stream: http.IncomingMessage, done: (body: Buffer | null) => void): void {
  const parts: Buffer[] = [];
  let size = 0;
  stream.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) parts.push(chunk);
  });
  stream.on("end", () => done(size <= MAX_BODY_BYTES ? Buffer.concat(parts) : null));
}
