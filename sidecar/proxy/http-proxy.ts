import type http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createProxyServer, type ProxyServer as HttpProxy } from "http-proxy-3";
import { LongPollTracker } from "../longpoll/longpoll-tracker.js";

export interface ProxyHooks {
  /** The app answered 101: the sidecar takes the two sockets over. */
  onWebSocketOpen(req: http.IncomingMessage, client: Duplex, upstream: Duplex, extensions: string | string[] | undefined): void;
  /** The app could not be reached (502 sent). */
  onUpstreamError(): void;
  /** An upgrade handed to {@link ProxyServer.upgrade} finished: opened, answered without 101, or failed. */
  onUpgradeSettled(): void;
  /** Whether joins may be refused now, so client messages must stay independently compressed. */
  refusesJoins(): boolean;
  longpoll: LongPollTracker;
}

interface PendingUpgrade {
  req: http.IncomingMessage;
  client: Socket;
  extensions: string | string[] | undefined;
}

/**
 * http-proxy-3 configured for the sidecar: plain HTTP is forwarded as is (X-Forwarded-*
 * set), WebSocket upgrades are forwarded with their subprotocols, extensions and headers,
 * and the 101's sockets are handed to the sidecar. A dead app gets 502 for both.
 */
export class ProxyServer {
  private readonly proxy: HttpProxy;
  private readonly pending = new WeakMap<Socket, PendingUpgrade>();
  private readonly upgraded = new WeakSet<Socket>();
  private readonly settled = new WeakSet<http.IncomingMessage>();

  constructor(
    upstream: string,
    private readonly hooks: ProxyHooks,
  ) {
    this.proxy = createProxyServer({ target: upstream, ws: true, xfwd: true, changeOrigin: false });
    this.proxy.on("proxyReqWs", this.onProxyReqWs);
    this.proxy.on("open", this.onOpen);
    this.proxy.on("proxyRes", this.onProxyRes);
    this.proxy.on("error", this.onError);
  }

  readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.proxy.web(req, res);
    // After web(): its pipe is attached, so reading the body beside it loses nothing.
    if (LongPollTracker.matches(req.url)) this.hooks.longpoll.observeRequest(req);
  };

  upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    this.proxy.ws(req, socket, head);
  }

  close(): void {
    this.proxy.close();
  }

  private readonly onProxyReqWs = (proxyReq: http.ClientRequest, req: http.IncomingMessage, client: Socket): void => {
    const offer = proxyReq.getHeader("sec-websocket-extensions");
    if (typeof offer === "string" && this.hooks.refusesJoins()) {
      proxyReq.setHeader("sec-websocket-extensions", withoutClientContextTakeover(offer));
    }
    proxyReq.on("upgrade", (proxyRes: http.IncomingMessage, upstream: Socket) => {
      this.pending.set(upstream, { req, client, extensions: proxyRes.headers["sec-websocket-extensions"] });
    });
    proxyReq.on("response", () => this.settle(req));
    client.once("close", () => this.settle(req));
  };

  private readonly onOpen = (upstream: Socket): void => {
    const p = this.pending.get(upstream);
    if (p === undefined) return;
    this.pending.delete(upstream);
    this.settle(p.req);
    if (p.client.destroyed) {
      upstream.destroy(); // the client left while the app was answering
      return;
    }
    this.upgraded.add(p.client);
    this.hooks.onWebSocketOpen(p.req, p.client, upstream, p.extensions);
  };

  private readonly onProxyRes = (proxyRes: http.IncomingMessage, req: http.IncomingMessage): void => {
    if (LongPollTracker.matches(req.url)) this.hooks.longpoll.observeResponse(req, proxyRes);
  };

  private readonly onError = (err: Error, req: http.IncomingMessage, target: http.ServerResponse | Socket): void => {
    if (isServerResponse(target)) {
      this.hooks.onUpstreamError();
      if (target.headersSent) {
        target.destroy();
        return;
      }
      const body = `connmeter: upstream unavailable (${(err as NodeJS.ErrnoException).code ?? err.message}); is the app listening?\n`;
      target.writeHead(502, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      target.end(body);
      return;
    }
    this.settle(req);
    if (this.upgraded.has(target)) {
      target.destroy(); // after the 101 an error only ends the pair
      return;
    }
    this.hooks.onUpstreamError();
    const body = `connmeter: upstream unavailable (${(err as NodeJS.ErrnoException).code ?? err.message})\n`;
    if (target.writable) {
      target.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  };

  private settle(req: http.IncomingMessage): void {
    if (this.settled.has(req)) return;
    this.settled.add(req);
    this.hooks.onUpgradeSettled();
  }
}

function isServerResponse(target: http.ServerResponse | Socket): target is http.ServerResponse {
  return typeof (target as http.ServerResponse).writeHead === "function";
}

/**
 * Adds `client_no_context_takeover` to every permessage-deflate offer (RFC 7692 §7.1.1.1).
 * An app that accepts it answers with the parameter, and the client then compresses each
 * message on its own, so the sidecar can cut a refused join without breaking the app's
 * inflater. An app that ignores it leaves the connection metered but not gated.
 */
export function withoutClientContextTakeover(offer: string): string {
  return offer
    .split(",")
    .map((o) => {
      const params = o.split(";").map((p) => p.trim());
      if (params[0]?.toLowerCase() !== "permessage-deflate" || params.some((p) => p.toLowerCase() === "client_no_context_takeover")) return o.trim();
      return [...params, "client_no_context_takeover"].join("; ");
    })
    .join(", ");
}
