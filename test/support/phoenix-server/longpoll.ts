// The long-poll transport at `/socket/longpoll`, as Phoenix 1.7.21 runs it:
//   GET without a (valid) token  -> new session: {"messages":[],"status":410,"token":T}
//   GET with a token             -> held until messages are buffered or the window ends:
//                                   {"messages":[...],"status":200|204,"token":T}
//   POST with a token            -> ndjson batch (vsn 2) or one JSON body: {"status":200}
//   POST with an unknown token   -> {"status":410}
// Every answer is HTTP 200 with application/json; the real status is in the body. A session
// nobody polls is dropped with its channels: the check runs every `idleTimeoutMs` (Phoenix:
// 1.5 x window_ms) and drops the session once the last poll is more than that old, so with the
// defaults an abandoned session goes 15-30 s after its last poll (the trace saw ~30 s).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ChannelRegistry } from "./registry.js";
import { negotiateSerializer, vsnParam } from "./serializer.js";
import type { OutFrame } from "./serializer.js";
import { PhoenixSocket } from "./socket.js";

export interface LongPollOptions {
  /** How long a GET is held when nothing is buffered (Phoenix `window_ms`, default 10 000). */
  windowMs: number;
  /** Idle-session check period and limit (Phoenix: 1.5 x window_ms). */
  idleTimeoutMs: number;
  /** Largest POST body accepted, in bytes. */
  maxBodyBytes: number;
}

const JSON_HEADERS = {
  vary: "accept-encoding",
  "cache-control": "max-age=0, private, must-revalidate",
  "access-control-allow-origin": "*",
  "content-type": "application/json; charset=utf-8",
};

function sendJson(res: ServerResponse, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, { ...JSON_HEADERS, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function pollBody(messages: readonly string[], status: number, token: string): string {
  return JSON.stringify({ messages, status, token });
}

function runFlush(session: LongPollSession): void {
  session.flush();
}

function runIdleCheck(session: LongPollSession): void {
  session.checkIdle();
}

/** One held GET. */
class Poll {
  timer: NodeJS.Timeout | undefined;
  constructor(readonly res: ServerResponse) {}
}

class LongPollSession {
  readonly phx: PhoenixSocket;
  private buffer: string[] = [];
  private waiting: Poll | undefined;
  private flushScheduled = false;
  private lastPollMs = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly token: string,
    make: (write: (frame: OutFrame) => void) => PhoenixSocket,
    private readonly options: LongPollOptions,
    private readonly onEnd: (session: LongPollSession) => void,
  ) {
    this.phx = make(this.enqueue);
    this.idleTimer = setTimeout(runIdleCheck, options.idleTimeoutMs, this).unref();
  }

  /** A GET with this session's token. */
  poll(res: ServerResponse): void {
    this.lastPollMs = Date.now();
    if (this.buffer.length > 0) {
      this.respond(res, 200);
      return;
    }
    // A newer poll takes over; an older one still ends with 204 when its window runs out.
    const poll = new Poll(res);
    this.waiting = poll;
    poll.timer = setTimeout(() => this.expire(poll), this.options.windowMs).unref();
    res.on("close", () => this.abandon(poll));
  }

  /** Dispatches each message of a POST body; false if one could not be decoded. */
  publish(body: Buffer, contentType: string | undefined): boolean {
    const lines =
      contentType === "application/x-ndjson"
        ? body.toString("utf8").split(/\r?\n/)
        : [body.toString("utf8")];
    try {
      for (const line of lines) {
        if (contentType === "application/x-ndjson" && line === "") continue;
        if (contentType === "application/x-ndjson" && !line.startsWith("[")) this.phx.handleIn(Buffer.from(line, "base64"), true);
        else this.phx.handleIn(line, false);
      }
    } catch {
      // The session process would crash on this message.
      this.end();
      return false;
    }
    return true;
  }

  flush(): void {
    this.flushScheduled = false;
    const poll = this.waiting;
    if (poll === undefined || this.buffer.length === 0) return;
    this.waiting = undefined;
    clearTimeout(poll.timer);
    this.lastPollMs = Date.now();
    this.respond(poll.res, 200);
  }

  checkIdle(): void {
    if (this.phx.isClosed) return;
    if (Date.now() - this.lastPollMs > this.options.idleTimeoutMs) {
      this.end();
      return;
    }
    this.idleTimer = setTimeout(runIdleCheck, this.options.idleTimeoutMs, this).unref();
  }

  /** Drops the session and its channels. Held polls still end with 204 at their window. */
  end(): void {
    if (this.phx.isClosed) return;
    clearTimeout(this.idleTimer);
    this.phx.shutdown();
    this.buffer = [];
    this.onEnd(this);
  }

  /** Ends held polls at once (server shutdown). */
  destroy(): void {
    const poll = this.waiting;
    this.end();
    if (poll !== undefined) {
      clearTimeout(poll.timer);
      poll.res.destroy();
    }
  }

  private readonly enqueue = (frame: OutFrame): void => {
    this.buffer.push(typeof frame === "string" ? frame : frame.toString("base64"));
    // Wait for the rest of this turn's messages, so a leave reply and its phx_close travel together.
    if (this.waiting !== undefined && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(runFlush, this);
    }
  };

  private respond(res: ServerResponse, status: number): void {
    const messages = this.buffer;
    this.buffer = [];
    sendJson(res, pollBody(messages, status, this.token));
  }

  private expire(poll: Poll): void {
    if (this.waiting === poll) this.waiting = undefined;
    sendJson(poll.res, pollBody([], 204, this.token));
  }

  private abandon(poll: Poll): void {
    clearTimeout(poll.timer);
    if (this.waiting === poll) this.waiting = undefined;
  }
}

/** Issues and checks tokens shaped like Phoenix.Token's (`SFMyNTY.<data>.<mac>`). */
class TokenSigner {
  private readonly secret = randomBytes(32);
  private next = 0;

  issue(): string {
    const data = Buffer.from(`${randomBytes(12).toString("hex")}:${++this.next}`).toString("base64url");
    return `SFMyNTY.${data}.${this.mac(data)}`;
  }

  valid(token: string): boolean {
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== "SFMyNTY" || parts[1] === undefined || parts[2] === undefined) return false;
    const want = Buffer.from(this.mac(parts[1]));
    const got = Buffer.from(parts[2]);
    return want.length === got.length && timingSafeEqual(want, got);
  }

  private mac(data: string): string {
    return createHmac("sha256", this.secret).update(data).digest("base64url");
  }
}

export class LongPollEndpoint {
  private readonly sessions = new Map<string, LongPollSession>();
  private readonly signer = new TokenSigner();

  constructor(
    private readonly registry: ChannelRegistry,
    private readonly options: LongPollOptions,
  ) {}

  /** Live long-poll sessions. */
  count(): number {
    return this.sessions.size;
  }

  handle(req: IncomingMessage, res: ServerResponse, url: URL): void {
    switch (req.method) {
      case "GET":
        return this.get(res, url);
      case "POST":
        return this.post(req, res, url);
      case "OPTIONS":
        res.writeHead(200, {
          "access-control-allow-origin": "*",
          "access-control-allow-headers": String(req.headers["access-control-request-headers"] ?? ""),
          "access-control-allow-methods": "get, post, options",
          "access-control-max-age": "3600",
          "content-length": 0,
        });
        res.end();
        return;
      default:
        res.writeHead(400, { "content-length": 0 });
        res.end();
    }
  }

  /** Drops every session (server shutdown). */
  destroyAll(): void {
    for (const session of [...this.sessions.values()]) session.destroy();
  }

  private find(url: URL): LongPollSession | undefined {
    const token = url.searchParams.get("token");
    if (token === null || !this.signer.valid(token)) return undefined;
    return this.sessions.get(token);
  }

  private get(res: ServerResponse, url: URL): void {
    const session = this.find(url);
    if (session !== undefined) {
      session.poll(res);
      return;
    }
    const serializer = negotiateSerializer(vsnParam(url));
    if (serializer === undefined) {
      sendJson(res, JSON.stringify({ status: 403 }));
      return;
    }
    const token = this.signer.issue();
    const make = (write: (frame: OutFrame) => void): PhoenixSocket => new PhoenixSocket(this.registry, serializer, "longpoll", write);
    this.sessions.set(token, new LongPollSession(token, make, this.options, this.forget));
    sendJson(res, pollBody([], 410, token));
  }

  private post(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const session = this.find(url);
    if (session === undefined) {
      req.resume();
      sendJson(res, JSON.stringify({ status: 410 }));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > this.options.maxBodyBytes) {
        res.writeHead(413, { "content-length": 0, connection: "close" });
        res.end();
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (res.headersSent) return;
      const ok = session.publish(Buffer.concat(chunks), req.headers["content-type"]);
      sendJson(res, JSON.stringify({ status: ok ? 200 : 408 }));
    });
  }

  private readonly forget = (session: LongPollSession): void => {
    this.sessions.delete(session.token);
  };
}
