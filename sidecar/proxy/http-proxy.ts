import type http from "node:http";
import type { Socket } from "node:net";
import { createProxyServer, type ProxyServer as HttpProxy } from "http-proxy-3";
import { LongPollTracker } from "../longpoll/longpoll-tracker.js";
import { upstreamUnavailable } from "./raw-http.js";
import { UpgradeForwarder } from "./upgrade-forwarder.js";

export interface ProxyHooks {
  /** The app answered 101: the sidecar takes the two sockets over. */
  onWebSocketOpen(url: string | undefined, client: Socket, upstream: Socket, extensions: string | undefined): void;
  /** The app could not be reached (502 sent) for a plain HTTP request or for an upgrade. */
  onUpstreamError(upgrade: boolean): void;
  /** An upgrade handed to {@link ProxyServer.upgrade} finished: opened, answered without 101, or failed. */
  onUpgradeSettled(): void;
  /** Whether joins may be refused now, so client messages must stay independently compressed. */
  refusesJoins(): boolean;
  longpoll: LongPollTracker;
}

/**
 * The sidecar's public side: plain HTTP goes through http-proxy-3 as is (X-Forwarded-* set,
 * long-poll bodies read beside the relay), WebSocket upgrades through the
 * {@link UpgradeForwarder}, whose 101 sockets are handed to the sidecar. A dead app gets 502
 * for both.
 */
export class ProxyServer {
  private readonly proxy: HttpProxy;
  private readonly upgrades: UpgradeForwarder;

  constructor(
    upstream: string,
    private readonly hooks: ProxyHooks,
  ) {
    this.proxy = createProxyServer({ target: upstream, xfwd: true, changeOrigin: false });
    this.proxy.on("proxyRes", this.onProxyRes);
    this.proxy.on("error", this.onError);
    this.upgrades = new UpgradeForwarder(upstream, {
      onOpen: (url, client, up, extensions) => hooks.onWebSocketOpen(url, client, up, extensions),
      onUpstreamError: () => hooks.onUpstreamError(true),
      onSettled: () => hooks.onUpgradeSettled(),
      rewriteOffer: (offer) => (hooks.refusesJoins() ? withoutClientContextTakeover(offer) : offer),
    });
  }

  readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.proxy.web(req, res);
    // After web(): its pipe is attached, so reading the body beside it loses nothing.
    if (LongPollTracker.matches(req.url)) this.hooks.longpoll.observeRequest(req);
  };

  upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    this.upgrades.forward(req, socket, head);
  }

  close(): void {
    this.proxy.close();
  }

  private readonly onProxyRes = (proxyRes: http.IncomingMessage, req: http.IncomingMessage): void => {
    if (LongPollTracker.matches(req.url)) this.hooks.longpoll.observeResponse(req, proxyRes);
  };

  private readonly onError = (err: Error, _req: http.IncomingMessage, target: http.ServerResponse | Socket): void => {
    this.hooks.onUpstreamError(false);
    // Upgrades never come here (the UpgradeForwarder has them), so `target` is a response.
    if (!isServerResponse(target) || target.headersSent) {
      target.destroy();
      return;
    }
    const body = upstreamUnavailable(err);
    target.writeHead(502, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
    target.end(body);
  };
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
