import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import { endWithText, rawHead, upstreamUnavailable } from "./raw-http.js";

export interface UpgradeHooks {
  /** The app answered 101: the sidecar takes both sockets over (the 101 is already relayed). */
  onOpen(url: string | undefined, client: Socket, upstream: Socket, extensions: string | undefined): void;
  /** The app could not be reached; the client got a 502. */
  onUpstreamError(): void;
  /** The upgrade finished one way or another: opened, answered without 101, failed, or abandoned. */
  onSettled(): void;
  /** Rewrites the client's Sec-WebSocket-Extensions offer before it goes to the app. */
  rewriteOffer(offer: string): string;
}

/**
 * Forwards a WebSocket upgrade to the app and relays its answer byte for byte: the 101 with
 * the app's own header order and case, or any other response in full.
 *
 * Why not http-proxy-3's `ws()`, which the sidecar used at first: its stream pass pipes the
 * two sockets itself (the tap must see and gate every chunk, so the pipes had to be undone)
 * and its closures keep the upgrade request, the app's 101 response and their headers alive
 * for the socket's whole life, several KiB per idle connection. Here nothing but the two
 * sockets outlives the handshake. Plain HTTP still goes through http-proxy-3.
 */
export class UpgradeForwarder {
  private readonly request: typeof http.request;
  private readonly host: string;
  private readonly port: number;

  constructor(
    upstream: string,
    private readonly hooks: UpgradeHooks,
  ) {
    const url = new URL(upstream);
    this.request = url.protocol === "https:" ? https.request : http.request;
    this.host = url.hostname;
    this.port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  }

  forward(req: http.IncomingMessage, client: Socket, head: Buffer): void {
    let settled = false;
    /** The app answered (101 or not): from now on the client gets the app's response or nothing. */
    let answered = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      this.hooks.onSettled();
    };
    const proxyReq = this.request({
      host: this.host,
      port: this.port,
      method: req.method,
      path: req.url,
      headers: this.forwardedHeaders(req),
      agent: false,
    });
    const onClientGone = (): void => {
      proxyReq.destroy();
      settle();
    };
    client.once("close", onClientGone);
    client.on("error", noop); // a reset before the 101 ends in 'close'
    proxyReq.on("upgrade", (res: http.IncomingMessage, upstream: Socket, upstreamHead: Buffer) => {
      answered = true;
      client.removeListener("close", onClientGone);
      client.removeListener("error", noop);
      settle();
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      client.write(rawHead(`HTTP/1.1 ${res.statusCode ?? 101} ${res.statusMessage ?? "Switching Protocols"}`, res.rawHeaders));
      for (const s of [client, upstream]) {
        s.setNoDelay(true);
        s.setKeepAlive(true);
        s.setTimeout(0);
      }
      if (upstreamHead.length > 0) upstream.unshift(upstreamHead);
      if (head.length > 0) client.unshift(head);
      const extensions = res.headers["sec-websocket-extensions"];
      this.hooks.onOpen(req.url, client, upstream, Array.isArray(extensions) ? extensions.join(", ") : extensions);
    });
    proxyReq.on("response", (res: http.IncomingMessage) => {
      answered = true;
      client.removeListener("close", onClientGone);
      settle();
      relayResponse(res, client);
    });
    proxyReq.on("error", (err: NodeJS.ErrnoException) => {
      client.removeListener("close", onClientGone);
      settle();
      if (client.destroyed) return;
      // An app that answers and then resets (Bandit's 431 for too many headers) was reached:
      // its answer is the one response; the client learns of the cut by the socket closing.
      if (answered) {
        client.destroy();
        return;
      }
      this.hooks.onUpstreamError();
      endWithText(client, "502 Bad Gateway", upstreamUnavailable(err));
    });
    proxyReq.end();
  }

  /** The client's headers in their own case and order, the offer rewritten, X-Forwarded-* appended. */
  private forwardedHeaders(req: http.IncomingMessage): Record<string, string | string[]> {
    const headers: Record<string, string | string[]> = {};
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      const value = name.toLowerCase() === "sec-websocket-extensions" ? this.hooks.rewriteOffer(raw[i + 1]!) : raw[i + 1]!;
      const previous = headers[name];
      headers[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
    }
    const socket = req.socket;
    appendForwarded(headers, "X-Forwarded-For", socket.remoteAddress ?? "");
    appendForwarded(headers, "X-Forwarded-Port", String(socket.localPort ?? ""));
    appendForwarded(headers, "X-Forwarded-Proto", "encrypted" in socket && socket.encrypted === true ? "wss" : "ws");
    return headers;
  }
}

/** Appends to an existing X-Forwarded-* list (any case) or starts one. */
function appendForwarded(headers: Record<string, string | string[]>, name: string, value: string): void {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase()) ?? name;
  const previous = headers[key];
  headers[key] = previous === undefined ? value : `${Array.isArray(previous) ? previous.join(",") : previous},${value}`;
}

/** Relays a non-101 answer to an upgrade (a 403 for a bad vsn, a 404...) and closes the socket. */
function relayResponse(res: http.IncomingMessage, client: Socket): void {
  if (client.destroyed) {
    res.resume();
    return;
  }
  // The body is relayed decoded and delimited by the close, so framing headers are replaced.
  const kept: string[] = [];
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (name !== "transfer-encoding" && name !== "connection" && name !== "keep-alive") kept.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  }
  kept.push("Connection", "close");
  client.write(rawHead(`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ""}`, kept));
  res.pipe(client);
  // A response cut short (the app reset mid-body) is cut short for the client too, never
  // left open or followed by a response of the sidecar's own.
  res.on("close", () => {
    if (!res.complete) client.destroy();
  });
  res.on("error", noop);
}

function noop(): void {}
