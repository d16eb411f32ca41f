// The websocket transport: `/socket/websocket` without compression and `/socketz/websocket`
// with permessage-deflate (context takeover, every frame compressed), answering the handshake
// and the close handshake the way Bandit 1.6.11 did in the traces.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { EventEmitter } from "node:events";
import { WebSocketServer } from "ws";
import type { WebSocket } from "ws";
import type { ChannelRegistry } from "./registry.js";
import { negotiateSerializer, vsnParam } from "./serializer.js";
import type { OutFrame } from "./serializer.js";
import { PhoenixSocket } from "./socket.js";

/** Close code sent when a client frame cannot be decoded (the socket process would crash). */
export const CLOSE_PROTOCOL_CRASH = 1011;

const CACHE_CONTROL = "cache-control: max-age=0, private, must-revalidate";
const EMPTY_REASON = Buffer.alloc(0);

/** Rewrites ws's 101 head into Bandit's header order and case (README, permessage-deflate). */
function banditHandshake(headers: string[], req: IncomingMessage): void {
  let accept = "";
  let extensions: string | undefined;
  for (const line of headers) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (name === "sec-websocket-accept") accept = line.slice(colon + 1).trim();
    if (name === "sec-websocket-extensions") extensions = line.slice(colon + 1).trim();
  }
  const out = [
    "HTTP/1.1 101 Switching Protocols",
    `date: ${new Date().toUTCString()}`,
    "upgrade: websocket",
    "connection: Upgrade",
    `sec-websocket-accept: ${accept}`,
  ];
  if (extensions !== undefined) {
    const params = extensions.split(";").map((p) => p.trim());
    // ws drops a bare client_max_window_bits offer; Bandit answers it with the value 15.
    const offered = /client_max_window_bits/.test(String(req.headers["sec-websocket-extensions"] ?? ""));
    if (offered && !params.some((p) => p.startsWith("client_max_window_bits"))) params.push("client_max_window_bits=15");
    out.push(`sec-websocket-extensions: ${params.join(";")}`);
  }
  out.push(CACHE_CONTROL);
  headers.splice(0, headers.length, ...out);
}

/** Bandit's answer to a peer's close code (RFC 6455 7.4.1-2): 1002 for codes a peer must not send, else 1000. */
export function closeReplyCode(code: number): number {
  if ((code >= 0 && code <= 999) || (code >= 1004 && code <= 1006) || (code >= 1012 && code <= 2999)) {
    return code === 1005 ? 1000 : 1002;
  }
  return 1000;
}

/**
 * ws echoes the peer's close code and reason; Bandit answers close 1000 "bye" with a bare 1000
 * (see closeReplyCode). ws has no option for that, so the receiver's close listener is wrapped
 * (ws 8.23 internals; if they change, the only effect is that ws's echo comes back).
 */
function answerCloseLikeBandit(ws: WebSocket, onCloseFrame: () => void): void {
  const receiver = (ws as unknown as { _receiver?: EventEmitter })._receiver;
  if (receiver === undefined) return;
  const [original] = receiver.listeners("conclude") as Array<(this: unknown, code: number, reason: Buffer) => void>;
  if (original === undefined) return;
  receiver.removeListener("conclude", original);
  receiver.on("conclude", function onConclude(this: unknown, code: number) {
    onCloseFrame();
    original.call(this, closeReplyCode(code), EMPTY_REASON);
  });
}

function rejectUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\n${CACHE_CONTROL}\r\nconnection: close\r\n\r\n`);
}

function uncork(conn: WsConnection): void {
  conn.uncork();
}

/**
 * One open websocket connection and its Phoenix socket. Frames sent in one turn of the event
 * loop leave in one TCP write (a leave reply and its phx_close, a join reply and the old
 * join's phx_close), as they did from Bandit.
 */
class WsConnection {
  readonly phx: PhoenixSocket;
  private corked = false;

  constructor(
    readonly ws: WebSocket,
    private readonly tcp: Duplex,
    phx: (write: (frame: OutFrame) => void) => PhoenixSocket,
    private readonly onEnd: (conn: WsConnection) => void,
  ) {
    this.phx = phx(this.write);
    ws.on("message", this.onMessage);
    ws.on("close", this.end);
    ws.on("error", this.onError);
    answerCloseLikeBandit(ws, this.end);
  }

  uncork(): void {
    this.corked = false;
    this.tcp.uncork();
  }

  private readonly write = (frame: OutFrame): void => {
    if (!this.corked) {
      this.corked = true;
      this.tcp.cork();
      process.nextTick(uncork, this);
    }
    this.ws.send(frame);
  };

  private readonly onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => {
    try {
      this.phx.handleIn(data as Buffer, isBinary);
    } catch {
      // A ProtocolError, or anything else: the socket process would crash either way.
      this.end();
      this.ws.close(CLOSE_PROTOCOL_CRASH);
    }
  };

  /** ws closes the connection itself after an error (bad frame, bad UTF-8, too large). */
  private readonly onError = (): void => undefined;

  /** The socket process is gone: on a close frame, a crash, or the TCP connection's end. */
  readonly end = (): void => {
    if (this.phx.isClosed) return;
    this.phx.shutdown();
    this.onEnd(this);
  };
}

export class WebSocketEndpoints {
  private readonly plain: WebSocketServer;
  private readonly compressed: WebSocketServer;
  private readonly live = new Set<WsConnection>();

  constructor(private readonly registry: ChannelRegistry) {
    this.plain = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
    this.compressed = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      // Context takeover is kept unless a client asks otherwise; threshold 0 compresses every frame.
      perMessageDeflate: { threshold: 0 },
    });
    this.plain.on("headers", banditHandshake);
    this.compressed.on("headers", banditHandshake);
  }

  /** Open websocket connections whose socket process is alive. */
  count(): number {
    return this.live.size;
  }

  /** Handles an HTTP upgrade; returns false if the path is not a websocket endpoint. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): boolean {
    const server = url.pathname === "/socket/websocket" ? this.plain : url.pathname === "/socketz/websocket" ? this.compressed : undefined;
    if (server === undefined) return false;
    const serializer = negotiateSerializer(vsnParam(url));
    if (serializer === undefined || req.method !== "GET") {
      rejectUpgrade(socket, req.method === "GET" ? 403 : 400, req.method === "GET" ? "Forbidden" : "Bad Request");
      return true;
    }
    server.handleUpgrade(req, socket, head, (ws) => {
      const make = (write: (frame: OutFrame) => void): PhoenixSocket => new PhoenixSocket(this.registry, serializer, "websocket", write);
      this.live.add(new WsConnection(ws, socket, make, this.forget));
    });
    return true;
  }

  /** Drops every connection at once (no close frame), as a killed server would. */
  terminateAll(): void {
    for (const conn of [...this.live]) {
      conn.end();
      conn.ws.terminate();
    }
  }

  private readonly forget = (conn: WsConnection): void => {
    this.live.delete(conn);
  };
}
