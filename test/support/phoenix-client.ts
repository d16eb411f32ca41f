import type { Channel } from "phoenix";
import { Socket } from "phoenix";
import WebSocket from "ws";

// The official phoenix client for websocket tests. It imports "phoenix" directly, which pins
// the client's globals without an XMLHttpRequest: long-poll tests load the client through
// test/support/phoenix-server/client/phoenix-js.ts instead and must not import this module.

/** The official Phoenix JS client on Node, through `ws`; never reconnects unless asked to. */
export function phoenixSocket(
  baseUrl: string,
  opts: { path?: string; vsn?: "1.0.0" | "2.0.0"; reconnect?: boolean; compress?: boolean } = {},
): Socket {
  const wsUrl = baseUrl.replace(/^http/, "ws") + (opts.path ?? "/socket");
  const compress = opts.compress ?? false;
  // ws offers permessage-deflate by default; turn it off unless the test wants it.
  const transport = class extends WebSocket {
    /** The 101's Sec-WebSocket-Extensions, as the app (through the sidecar) answered. */
    negotiatedExtensions: string | undefined;
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { perMessageDeflate: compress });
      this.once("upgrade", (res) => (this.negotiatedExtensions = res.headers["sec-websocket-extensions"]));
    }
  };
  const v1 = opts.vsn === "1.0.0";
  return new Socket(wsUrl, {
    transport: transport as unknown as typeof globalThis.WebSocket,
    vsn: opts.vsn ?? "2.0.0",
    reconnectAfterMs: () => (opts.reconnect === true ? 20 : 3_600_000),
    rejoinAfterMs: () => 3_600_000,
    heartbeatIntervalMs: 30_000,
    ...(v1
      ? {
          encode: (msg: unknown, cb: (s: string) => void) => cb(JSON.stringify(msg)),
          decode: (raw: string, cb: (m: unknown) => void) => cb(JSON.parse(raw)),
        }
      : {}),
  } as ConstructorParameters<typeof Socket>[1]);
}

/** The Sec-WebSocket-Extensions the 101 carried for a socket made by {@link phoenixSocket}. */
export function negotiatedExtensions(socket: Socket): string | undefined {
  return (socket as unknown as { conn: { negotiatedExtensions?: string } }).conn.negotiatedExtensions;
}

/** Resolves once the socket is open. */
export function connected(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.onOpen(() => resolve());
    socket.onError((e: unknown) => reject(new Error(`socket error: ${String(e)}`)));
    socket.connect();
  });
}

/** Joins and resolves with the reply status ("ok" | "error"). */
export function join(channel: Channel): Promise<string> {
  return new Promise((resolve, reject) => {
    channel
      .join(10_000)
      .receive("ok", () => resolve("ok"))
      .receive("error", () => resolve("error"))
      .receive("timeout", () => reject(new Error(`join ${channel.topic} timed out`)));
  });
}

/** Joins and resolves with the reply's status and response (rejects on timeout). */
export function joinReply<R = unknown>(channel: Channel, timeoutMs = 10_000): Promise<{ status: "ok" | "error"; response: R }> {
  return new Promise((resolve, reject) => {
    channel
      .join(timeoutMs)
      .receive("ok", (response: R) => resolve({ status: "ok", response }))
      .receive("error", (response: R) => resolve({ status: "error", response }))
      .receive("timeout", () => reject(new Error(`join ${channel.topic} timed out`)));
  });
}

export function leave(channel: Channel): Promise<void> {
  return new Promise((resolve) => {
    channel.leave(10_000).receive("ok", () => resolve());
  });
}

