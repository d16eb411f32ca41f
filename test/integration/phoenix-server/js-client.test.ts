// The official phoenix JS client (1.7.21, with ws as its WebSocket) against the test server:
// the same flows the traces recorded, checked through the client's callbacks and the server's
// channel count.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { Socket as NetSocket } from "node:net";
import { loadPhoenixClient } from "../../support/phoenix-server/client/phoenix-js.js";
import type { PhoenixChannel, PhoenixClientOptions, PhoenixClientSocket } from "../../support/phoenix-server/client/phoenix-js.js";
import { startPhoenixServer } from "../../support/phoenix-server/index.js";
import type { PhoenixServer } from "../../support/phoenix-server/index.js";
import { sleep, waitUntil as waitFor } from "../../support/wait.js";

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(): Promise<PhoenixServer> {
  const s = await startPhoenixServer();
  cleanups.push(() => s.close());
  return s;
}

async function client(s: PhoenixServer, path = "/socket", opts: PhoenixClientOptions = {}): Promise<PhoenixClientSocket> {
  const { Socket } = await loadPhoenixClient();
  const socket = new Socket(`${s.url.replace("http", "ws")}${path}`, { transport: WebSocket, ...opts });
  cleanups.push(() => socket.disconnect());
  socket.connect();
  return socket;
}

type Outcome = { status: "ok" | "error" | "timeout"; response: unknown };

function outcome(push: ReturnType<PhoenixChannel["join"]>): Promise<Outcome> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: undefined }));
  });
}

function nextEvent(channel: PhoenixChannel, event: string): Promise<unknown> {
  return new Promise((resolve) => channel.on(event, resolve));
}

describe("the official phoenix JS client over websocket", () => {
  it("joins patterns:stream with a payload, gets pong for ping, and leaves; the count goes 1 then 0", async () => {
    const s = await server();
    const socket = await client(s);
    const channel = socket.channel("patterns:stream", { hello: "world" });
    expect(await outcome(channel.join())).toEqual({ status: "ok", response: {} });
    expect(s.countByTopic()).toEqual({ "patterns:stream": 1 });
    expect(s.sockets()).toBe(1);
    expect(await outcome(channel.push("ping", { n: 1 }))).toEqual({ status: "ok", response: { pong: true } });
    await outcome(channel.leave());
    await waitFor("the leave to end the channel", () => s.count() === 0);
    socket.disconnect();
    await waitFor("the socket to close", () => s.sockets() === 0);
  });

  it("gets {reason: unauthorized} for denied:x, each retry too, and never counts it", async () => {
    const s = await server();
    const socket = await client(s, "/socket", { rejoinAfterMs: () => 30 });
    const channel = socket.channel("denied:x");
    const errors: unknown[] = [];
    channel.join().receive("error", (r) => errors.push(r));
    await waitFor("two rejoin attempts", () => errors.length >= 3);
    expect(errors.slice(0, 3)).toEqual([{ reason: "unauthorized" }, { reason: "unauthorized" }, { reason: "unauthorized" }]);
    expect(s.count()).toBe(0);
    channel.leave();
  });

  it("keeps one channel when a second Channel object joins the same topic, and closes the first", async () => {
    const s = await server();
    const socket = await client(s);
    const first = socket.channel("patterns:stream");
    await outcome(first.join());
    const second = socket.channel("patterns:stream");
    expect(await outcome(second.join())).toEqual({ status: "ok", response: {} });
    expect(s.countByTopic()).toEqual({ "patterns:stream": 1 });
    expect(await outcome(second.push("ping", {}))).toEqual({ status: "ok", response: { pong: true } });
    expect(first.state).toBe("closed");
    await outcome(second.leave());
    await waitFor("the leave", () => s.count() === 0);
  });

  it("sends phx_error on crash with no reply, drops the channel at once, and the client's rejoin counts again", async () => {
    const s = await server();
    const socket = await client(s, "/socket", { rejoinAfterMs: () => 100 });
    const channel = socket.channel("patterns:stream");
    await outcome(channel.join());
    const errored = new Promise<void>((resolve) => channel.onError(() => resolve()));
    let crashAnswered = false;
    channel.push("crash", {}, 2000).receive("ok", () => (crashAnswered = true)).receive("error", () => (crashAnswered = true));
    await errored;
    expect(s.count()).toBe(0);
    // The server registers the rejoin before its reply reaches the client: wait for both.
    await waitFor("the automatic rejoin", () => s.count() === 1 && channel.state === "joined");
    expect(s.count()).toBe(1);
    expect(channel.state).toBe("joined");
    expect(await outcome(channel.push("ping", {}))).toEqual({ status: "ok", response: { pong: true } });
    expect(crashAnswered).toBe(false);
  });

  it("closes the channel on stop with no reply and no rejoin; stop_reply replies {bye: true} first", async () => {
    const s = await server();
    const socket = await client(s, "/socket", { rejoinAfterMs: () => 30 });
    const stopped = socket.channel("patterns:stream");
    await outcome(stopped.join());
    const closed = new Promise<void>((resolve) => stopped.onClose(resolve));
    stopped.push("stop", {});
    await closed;
    expect(s.count()).toBe(0);

    const other = socket.channel("patterns:stats");
    await outcome(other.join());
    const otherClosed = new Promise<void>((resolve) => other.onClose(resolve));
    expect(await outcome(other.push("stop_reply", {}))).toEqual({ status: "ok", response: { bye: true } });
    await otherClosed;
    await sleep(100);
    expect(s.count()).toBe(0);
    expect(stopped.state).toBe("closed");
  });

  it("broadcasts bcast to all three sockets, the sender included, and bcast_reply replies after the broadcast", async () => {
    const s = await server();
    const channels: PhoenixChannel[] = [];
    for (let i = 0; i < 3; i++) {
      const channel = (await client(s)).channel("patterns:stats");
      await outcome(channel.join());
      channels.push(channel);
    }
    expect(s.countByTopic()).toEqual({ "patterns:stats": 3 });
    const [a, b] = channels as [PhoenixChannel, PhoenixChannel, PhoenixChannel];
    const first = channels.map((c) => nextEvent(c, "bcast"));
    a.push("bcast", { msg: "hello all", from: "A" });
    expect(await Promise.all(first)).toEqual(Array(3).fill({ from: "A", msg: "hello all" }));

    const order: string[] = [];
    const second = channels.map((c, i) => new Promise<void>((resolve) => c.on("bcast", () => { if (i === 1) order.push("broadcast"); resolve(); })));
    b.push("bcast_reply", { msg: "second", from: "B" }).receive("ok", () => order.push("reply"));
    await Promise.all(second);
    await waitFor("the reply", () => order.length === 2);
    expect(order).toEqual(["broadcast", "reply"]);
  });

  it("answers binary pushes: bin replies binary, binbcast reaches both sockets, binpush and push_me push", async () => {
    const s = await server();
    const a = (await client(s)).channel("patterns:vsm");
    const b = (await client(s)).channel("patterns:vsm");
    await outcome(a.join());
    await outcome(b.join());
    const bytes = (text: string): ArrayBuffer => new Uint8Array(Buffer.from(text)).buffer;
    const text = (value: unknown): string => Buffer.from(value as ArrayBuffer).toString();

    const reply = await outcome(a.push("bin", bytes("\u0001\u0002hello-binary")));
    expect(reply.status).toBe("ok");
    expect(reply.response).toBeInstanceOf(ArrayBuffer);
    expect(text(reply.response)).toBe("\u0001\u0002hello-binary");

    const bcasts = [nextEvent(a, "binbcast"), nextEvent(b, "binbcast")];
    a.push("binbcast", bytes("bcast-bytes"));
    expect((await Promise.all(bcasts)).map(text)).toEqual(["bcast-bytes", "bcast-bytes"]);

    const pushed = nextEvent(a, "binpush");
    a.push("binpush", bytes("push-bytes"));
    expect(text(await pushed)).toBe("push-bytes");

    const json = nextEvent(a, "pushed");
    a.push("push_me", { x: 1 });
    expect(await json).toEqual({ x: 1 });
  });

  it("negotiates permessage-deflate on /socketz and every server frame is compressed", async () => {
    const s = await server();
    const heads: string[] = [];
    const firstBytes: number[] = [];
    class TappedWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { perMessageDeflate: { threshold: 0 } });
        this.once("upgrade", (res) => heads.push(String(res.headers["sec-websocket-extensions"])));
        // Test-only peek at the TCP socket to read each server frame's first byte.
        this.once("open", () => {
          const tcp = (this as unknown as { _socket: NetSocket })._socket;
          tcp.prependListener("data", (chunk: Buffer) => firstBytes.push(chunk[0] ?? 0));
        });
      }
    }
    const socket = await client(s, "/socketz", { transport: TappedWebSocket });
    const channel = socket.channel("patterns:stream", { hello: "world" });
    await outcome(channel.join());
    expect(await outcome(channel.push("ping", {}))).toEqual({ status: "ok", response: { pong: true } });
    const blob = "abcdefgh".repeat(200);
    const got = nextEvent(channel, "bcast");
    channel.push("bcast", { blob });
    expect(await got).toEqual({ blob });
    expect(heads).toEqual(["permessage-deflate;client_max_window_bits=15"]);
    expect(firstBytes.length).toBeGreaterThanOrEqual(2);
    // FIN + RSV1 + opcode 1: a compressed text frame.
    expect(new Set(firstBytes)).toEqual(new Set([0xc1]));
  });

  it("leaves a deflate offer to /socket unanswered and sends uncompressed frames", async () => {
    const s = await server();
    const heads: Array<string | undefined> = [];
    class TappedWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { perMessageDeflate: { threshold: 0 } });
        this.once("upgrade", (res) => heads.push(res.headers["sec-websocket-extensions"]));
      }
    }
    const socket = await client(s, "/socket", { transport: TappedWebSocket });
    const channel = socket.channel("patterns:stream");
    expect(await outcome(channel.join())).toEqual({ status: "ok", response: {} });
    expect(heads).toEqual([undefined]);
  });

  it("drops a socket's channels when it disconnects without leaving", async () => {
    const s = await server();
    const socket = await client(s);
    await outcome(socket.channel("patterns:stream").join());
    await outcome(socket.channel("room:3").join());
    expect(s.count()).toBe(2);
    socket.disconnect();
    await waitFor("the channels to go", () => s.count() === 0 && s.sockets() === 0, 1000);
  });
});
