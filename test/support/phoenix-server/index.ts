// A Node stand-in for the recorded Phoenix 1.7.21 app (phoenix-traces/README.md): the test
// double behind the sidecar in integration tests, the local demo and the benchmarks.
//
// Endpoints, all on one HTTP port:
//   GET  /healthz                       200 "ok" (readiness probes)
//   GET  /count                         {"count","total","topics","websocket_connections","longpoll_sessions"};
//                                       `?channels=1` adds "channels": [{topic, join_ref, vsn, transport}]
//                                       ("total" and "topics" are what the real app's /count reports)
//   GET  /socket/websocket?vsn=...      websocket, compression off (a deflate offer is left unanswered)
//   GET  /socketz/websocket?vsn=...     websocket, permessage-deflate on every frame
//   GET|POST|OPTIONS /socket/longpoll   long-poll (see longpoll.ts)
// vsn: 1.0.0 (the default when absent) or 2.0.0 (`~> 1.0.0` / `~> 2.0.0`); anything else gets
// 403 with an empty body, as Phoenix.Transports.WebSocket answers a refused connect. A plain GET
// (no upgrade) of a websocket path gets 400.
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { LongPollEndpoint } from "./longpoll.js";
import { ChannelRegistry } from "./registry.js";
import { negotiateSerializer, vsnParam } from "./serializer.js";
import { WebSocketEndpoints } from "./websocket.js";

export { encodeJson } from "./elixir-json.js";
export { channelFor, MAX_REPLY_BYTES } from "./channels.js";
export { negotiateSerializer, ProtocolError, V1_SERIALIZER, V2_SERIALIZER } from "./serializer.js";
export type { OutFrame, PhxMessage, Serializer } from "./serializer.js";
export type { ChannelInfo } from "./registry.js";

export interface PhoenixServerOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks an ephemeral port. */
  port?: number;
  /** Long-poll `window_ms`: how long an empty GET is held; default 10 000 like Phoenix. */
  longpollWindowMs?: number;
  /** Idle long-poll session check period and limit; default 1.5 x longpollWindowMs like Phoenix. */
  longpollIdleTimeoutMs?: number;
}

export interface PhoenixServer {
  /** `http://host:port` */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Joined channels over all transports: the Registry ground truth. */
  count(): number;
  countByTopic(): Record<string, number>;
  /** Open websocket connections. */
  sockets(): number;
  /** Live long-poll sessions. */
  longpollSessions(): number;
  /** Stops listening and drops every socket and session at once. */
  close(): Promise<void>;
}

export const DEFAULT_LONGPOLL_WINDOW_MS = 10_000;
const MAX_POST_BYTES = 10_000_000;

function countBody(registry: ChannelRegistry, ws: WebSocketEndpoints, lp: LongPollEndpoint, withChannels: boolean): string {
  const total = registry.count();
  const body: Record<string, unknown> = {
    count: total,
    total,
    topics: registry.countByTopic(),
    websocket_connections: ws.count(),
    longpoll_sessions: lp.count(),
  };
  if (withChannels) body.channels = registry.list();
  return JSON.stringify(body);
}

function plain(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function requestUrl(req: IncomingMessage): URL {
  return new URL(req.url ?? "/", "http://localhost");
}

export async function startPhoenixServer(opts: PhoenixServerOptions = {}): Promise<PhoenixServer> {
  const host = opts.host ?? "127.0.0.1";
  const windowMs = opts.longpollWindowMs ?? DEFAULT_LONGPOLL_WINDOW_MS;
  const registry = new ChannelRegistry();
  const websockets = new WebSocketEndpoints(registry);
  const longpoll = new LongPollEndpoint(registry, {
    windowMs,
    idleTimeoutMs: opts.longpollIdleTimeoutMs ?? Math.trunc(windowMs * 1.5),
    maxBodyBytes: MAX_POST_BYTES,
  });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = requestUrl(req);
    switch (url.pathname) {
      case "/healthz":
        return plain(res, 200, "ok");
      case "/count":
        res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(countBody(registry, websockets, longpoll, url.searchParams.get("channels") === "1"));
        return;
      case "/socket/longpoll":
        return longpoll.handle(req, res, url);
      case "/socket/websocket":
      case "/socketz/websocket":
        // Phoenix runs connect (and so the vsn check) before it finds there is no upgrade.
        if (negotiateSerializer(vsnParam(url)) === undefined) return plain(res, 403, "");
        return plain(res, 400, "'connection' header must contain 'upgrade', got []");
      default:
        return plain(res, 404, "Not Found");
    }
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => socket.destroy());
    if (!websockets.handleUpgrade(req, socket, head, requestUrl(req))) {
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    }
  };

  const server: Server = createServer(onRequest);
  server.on("upgrade", onUpgrade);
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : (opts.port ?? 0);
  const urlHost = host.includes(":") ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      websockets.terminateAll();
      longpoll.destroyAll();
      server.closeAllConnections();
    });
    return closing;
  };

  return {
    url: `http://${urlHost}:${port}`,
    port,
    host,
    count: () => registry.count(),
    countByTopic: () => registry.countByTopic(),
    sockets: () => websockets.count(),
    longpollSessions: () => longpoll.count(),
    close,
  };
}
