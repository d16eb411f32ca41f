// Long-poll: the recorded HTTP exchanges replayed against the test server, the official JS
// client's LongPoll transport, and the expiry of an abandoned session.
import { afterEach, describe, expect, it } from "vitest";
import { loadPhoenixClient } from "../../support/phoenix-server/client/phoenix-js.js";
import type { PhoenixChannel, PhoenixClientSocket } from "../../support/phoenix-server/client/phoenix-js.js";
import { startPhoenixServer } from "../../support/phoenix-server/index.js";
import type { PhoenixServer, PhoenixServerOptions } from "../../support/phoenix-server/index.js";
import { replayLongPollTrace } from "../../support/phoenix-server/replay/longpoll-replay.js";
import { loadTrace } from "../../support/phoenix-server/replay/trace.js";
import type { ServerCount } from "../../support/phoenix-server/replay/trace.js";
import { sleep, waitUntil as waitFor } from "../../support/wait.js";

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(opts: PhoenixServerOptions = {}): Promise<PhoenixServer> {
  const s = await startPhoenixServer(opts);
  cleanups.push(() => s.close());
  return s;
}

function counts(s: PhoenixServer): { total: number; topics: Record<string, number> } {
  return { total: s.count(), topics: s.countByTopic() };
}

async function expectCounts(s: PhoenixServer, point: ServerCount): Promise<void> {
  const want = { total: point.total, topics: point.topics };
  const deadline = Date.now() + 1000;
  while (JSON.stringify(counts(s)) !== JSON.stringify(want) && Date.now() < deadline) await sleep(2);
  expect({ label: point.label, ...counts(s) }).toEqual({ label: point.label, ...want });
}

function joined(channel: PhoenixChannel): Promise<unknown> {
  return new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", (r) => reject(new Error(JSON.stringify(r)))).receive("timeout", () => reject(new Error("join timeout")));
  });
}

function pushed(channel: PhoenixChannel, event: string, payload: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    channel.push(event, payload).receive("ok", resolve).receive("error", (r) => reject(new Error(JSON.stringify(r)))).receive("timeout", () => reject(new Error(`${event} timeout`)));
  });
}

async function longPollClient(s: PhoenixServer): Promise<PhoenixClientSocket> {
  const { Socket, LongPoll } = await loadPhoenixClient();
  const socket = new Socket(`${s.url.replace("http", "ws")}/socket`, { transport: LongPoll, heartbeatIntervalMs: 60_000 });
  cleanups.push(() => socket.disconnect());
  return socket;
}

describe("replaying recorded long-poll traces", () => {
  for (const name of ["s10-longpoll-v1-raw", "s10-longpoll-v2"]) {
    const trace = loadTrace(name);
    it(`answers ${name} as Phoenix did: ${trace.meta.description}`, async () => {
      const s = await server();
      const checked: string[] = [];
      const result = await replayLongPollTrace(trace, { host: s.host, port: s.port }, {
        checkpoint: async (point) => {
          await expectCounts(s, point);
          checked.push(point.label);
        },
      });
      expect(result.received).toEqual(result.expected);
      expect(result.expected.length).toBeGreaterThan(5);
      expect(checked).toEqual(trace.meta.server_counts.map((p) => p.label));
    });
  }

  it("answers s10-longpoll-abandon-v2 as Phoenix did and drops the session one idle period after its last poll, not before", async () => {
    // Phoenix checks every 1.5 x window_ms and drops a session whose last poll is older than
    // that: with window 10 s the trace lost the channel ~30 s after the last poll (check at 15 s
    // found it 14.99 s old). Scaled down: window 300 ms, so checks at 450 ms and 900 ms.
    const windowMs = 300;
    const idleMs = 450;
    const s = await server({ longpollWindowMs: windowMs });
    const trace = loadTrace("s10-longpoll-abandon-v2");
    let lastPollSeen = 0;
    const result = await replayLongPollTrace(trace, { host: s.host, port: s.port }, {
      answerTimeoutMs: windowMs + 2000,
      checkpoint: async (point) => {
        if (point.label === "after join" || point.label === "poll 0") {
          await expectCounts(s, point);
          lastPollSeen = Date.now();
        }
      },
    });
    // The held poll ended with 204 after the window, as the trace's did after 10 s.
    expect(result.received).toEqual(result.expected);
    expect(result.received.at(-1)?.body).toContain('"status":204');
    expect(s.count()).toBe(1);
    await waitFor("the abandoned session to be dropped", () => s.count() === 0, 4 * idleMs);
    // lastPollSeen is a few ms after the server saw the poll, hence the small allowance.
    const droppedAfterMs = Date.now() - lastPollSeen;
    expect(droppedAfterMs).toBeGreaterThanOrEqual(idleMs - 50);
    expect(droppedAfterMs).toBeLessThanOrEqual(2 * idleMs + 500);
    expect(s.longpollSessions()).toBe(0);
  });

  it("checks an idle session every idle period from its start: one polled mid-period survives the next check", async () => {
    // idle 400 ms: checks at +400 and +800. A poll at +200 (its 100 ms window ends at +300) is
    // 200 ms old at the first check, so the session lives until the second, ~600 ms after it.
    const s = await server({ longpollWindowMs: 100, longpollIdleTimeoutMs: 400 });
    const base = `http://${s.host}:${s.port}/socket/longpoll?vsn=2.0.0`;
    const startedAt = Date.now();
    const { token } = (await (await fetch(base)).json()) as { token: string };
    const post = await fetch(`${base}&token=${token}`, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: '["1","1","room:idle","phx_join",{}]',
    });
    expect(await post.json()).toEqual({ status: 200 });
    await sleep(200 - (Date.now() - startedAt));
    const poll = (await (await fetch(`${base}&token=${token}`)).json()) as { messages: string[] };
    expect(poll.messages).toEqual(['["1","1","room:idle","phx_reply",{"response":{},"status":"ok"}]']);
    await sleep(600 - (Date.now() - startedAt));
    expect(s.count()).toBe(1);
    await waitFor("the second check to drop it", () => s.count() === 0, 2000);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(790);
  });
});

describe("the official phoenix JS client over long-poll", () => {
  it("joins, pings and leaves over LongPoll, and the count follows", async () => {
    const s = await server({ longpollWindowMs: 2000 });
    const socket = await longPollClient(s);
    socket.connect();
    const channel = socket.channel("patterns:lp", { hello: "world" });
    await joined(channel);
    expect(s.countByTopic()).toEqual({ "patterns:lp": 1 });
    expect(s.longpollSessions()).toBe(1);
    expect(s.sockets()).toBe(0);
    expect(await pushed(channel, "ping", {})).toEqual({ pong: true });
    const closed = new Promise<void>((resolve) => channel.onClose(resolve));
    channel.leave();
    await closed;
    await waitFor("the leave to reach the server", () => s.count() === 0);
  });

  it("receives a broadcast over LongPoll sent from a websocket client", async () => {
    const s = await server({ longpollWindowMs: 2000 });
    const lp = await longPollClient(s);
    lp.connect();
    const lpChannel = lp.channel("patterns:mixed");
    await joined(lpChannel);
    const got = new Promise<unknown>((resolve) => lpChannel.on("bcast", resolve));

    const { Socket } = await loadPhoenixClient();
    const { WebSocket } = await import("ws");
    const ws = new Socket(`${s.url.replace("http", "ws")}/socket`, { transport: WebSocket });
    cleanups.push(() => ws.disconnect());
    ws.connect();
    const wsChannel = ws.channel("patterns:mixed");
    await joined(wsChannel);
    wsChannel.push("bcast", { msg: "hi", from: "ws" });
    expect(await got).toEqual({ from: "ws", msg: "hi" });
    expect(s.count()).toBe(2);
  });

  it("keeps an abandoned LongPoll session's channel until the idle timeout, then drops it", async () => {
    const s = await server({ longpollWindowMs: 200, longpollIdleTimeoutMs: 400 });
    const socket = await longPollClient(s);
    socket.connect();
    await joined(socket.channel("patterns:abandon"));
    await joined(socket.channel("room:abandon"));
    expect(s.count()).toBe(2);
    socket.disconnect();
    const disconnectedAt = Date.now();
    await sleep(250);
    expect(s.count()).toBe(2);
    await waitFor("the idle session to be dropped", () => s.count() === 0, 2000);
    expect(Date.now() - disconnectedAt).toBeGreaterThanOrEqual(390);
    expect(s.longpollSessions()).toBe(0);
  });
});
