// Behaviours of the test server beyond the recordings: HTTP endpoints, vsn negotiation, the
// load-test extras, bad input, shutdown, and holding many sockets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { request } from "node:http";
import { startPhoenixServer } from "../../support/phoenix-server/index.js";
import type { PhoenixServer } from "../../support/phoenix-server/index.js";
import { waitUntil as waitFor } from "../../support/wait.js";

let server: PhoenixServer;

beforeAll(async () => {
  server = await startPhoenixServer();
});

afterAll(async () => {
  await server.close();
});

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(method: string, path: string, body?: string, headers: Record<string, string> = {}, s: PhoenixServer = server): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: s.host, port: s.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A raw websocket client that queues what it receives. */
class RawClient {
  readonly received: Array<string | Buffer> = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer, isBinary) => this.received.push(isBinary ? data : data.toString()));
    ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on("error", () => undefined);
  }

  static open(path: string, s: PhoenixServer = server): Promise<RawClient> {
    const ws = new WebSocket(`${s.url.replace("http", "ws")}${path}`);
    const c = new RawClient(ws);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(c));
      ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once("error", reject);
    });
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" || Buffer.isBuffer(message) ? message : JSON.stringify(message));
  }

  async next(n = 1): Promise<Array<string | Buffer>> {
    await waitFor(`${n} messages`, () => this.received.length >= n);
    return this.received.splice(0, n);
  }

  async json(n = 1): Promise<unknown[]> {
    return (await this.next(n)).map((m) => JSON.parse(String(m)) as unknown);
  }
}

function upgradeStatus(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}${path}`);
    ws.once("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once("open", () => {
      resolve(101);
      ws.close();
    });
    ws.once("error", reject);
  });
}

describe("HTTP endpoints", () => {
  it("answers GET /healthz with 200", async () => {
    expect(await http("GET", "/healthz")).toMatchObject({ status: 200, body: "ok" });
  });

  it("reports joined channels on GET /count, and lists them with ?channels=1", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "room:count", "phx_join", {}]);
    await c.json();
    const body = JSON.parse((await http("GET", "/count")).body) as Record<string, unknown>;
    expect(body).toMatchObject({ count: 1, total: 1, topics: { "room:count": 1 }, websocket_connections: 1, longpoll_sessions: 0 });
    expect(body.channels).toBeUndefined();
    const detailed = JSON.parse((await http("GET", "/count?channels=1")).body) as Record<string, unknown>;
    expect(detailed.channels).toEqual([{ topic: "room:count", join_ref: "1", vsn: "2.0.0", transport: "websocket" }]);
    c.ws.close();
    await waitFor("close", () => server.count() === 0);
  });

  it("answers unknown paths with 404 and has no long-poll on /socketz", async () => {
    expect((await http("GET", "/nope")).status).toBe(404);
    expect((await http("GET", "/socketz/longpoll?vsn=2.0.0")).status).toBe(404);
  });
});

describe("vsn negotiation", () => {
  it("accepts vsn 2.0.0 and 1.0.0 on both websocket paths", async () => {
    for (const path of ["/socket/websocket", "/socketz/websocket"]) {
      expect(await upgradeStatus(`${path}?vsn=2.0.0`)).toBe(101);
      expect(await upgradeStatus(`${path}?vsn=1.0.0`)).toBe(101);
    }
  });

  it("refuses an unknown or invalid vsn with 403, as Phoenix does when connect fails", async () => {
    expect(await upgradeStatus("/socket/websocket?vsn=3.0.0")).toBe(403);
    expect(await upgradeStatus("/socket/websocket?vsn=2.1.0")).toBe(403);
    expect(await upgradeStatus("/socketz/websocket?vsn=banana")).toBe(403);
  });

  it("treats a missing vsn as 1.0.0 (JSON objects)", async () => {
    const c = await RawClient.open("/socket/websocket");
    c.send({ topic: "phoenix", event: "heartbeat", payload: {}, ref: "1" });
    expect(await c.next()).toEqual(['{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}']);
    c.ws.close();
  });

  it("answers a plain GET of a websocket path with 400, or 403 for a bad vsn", async () => {
    expect((await http("GET", "/socket/websocket?vsn=2.0.0")).status).toBe(400);
    expect((await http("GET", "/socket/websocket?vsn=9.0.0")).status).toBe(403);
  });
});

describe("routing", () => {
  it("answers a join of a topic no channel matches with unmatched topic and a null join_ref", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "nowhere:1", "phx_join", {}]);
    expect(await c.json()).toEqual([[null, "1", "nowhere:1", "phx_reply", { response: { reason: "unmatched topic" }, status: "error" }]]);
    expect(server.count()).toBe(0);
    c.ws.close();
  });

  it("acknowledges a leave of a topic that is not joined without a phx_close", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["7", "8", "patterns:x", "phx_leave", {}]);
    c.send([null, "9", "phoenix", "heartbeat", {}]);
    expect(await c.json(2)).toEqual([
      ["7", "8", "patterns:x", "phx_reply", { response: {}, status: "ok" }],
      [null, "9", "phoenix", "phx_reply", { response: {}, status: "ok" }],
    ]);
    c.ws.close();
  });

  it("re-encodes payloads with sorted keys, as Elixir maps come out of Jason", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "patterns:sort", "phx_join", {}]);
    await c.next();
    c.send('["1","2","patterns:sort","push_me",{"z":{"b":1,"a":[{"y":2,"x":1}]},"a":"\\u00e9"}]');
    expect(await c.next()).toEqual(['["1",null,"patterns:sort","pushed",{"a":"é","z":{"a":[{"x":1,"y":2}],"b":1}}]']);
    c.ws.close();
  });
});

describe("compression", () => {
  it("accepts a client that asks for server_no_context_takeover on /socketz", async () => {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/socketz/websocket?vsn=2.0.0`, {
      perMessageDeflate: { serverNoContextTakeover: true, threshold: 0 },
    });
    let ext: string | undefined;
    ws.once("upgrade", (res) => (ext = res.headers["sec-websocket-extensions"]));
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    expect(ext).toBe("permessage-deflate;server_no_context_takeover;client_max_window_bits=15");
    const reply = new Promise<string>((resolve) => ws.once("message", (d: Buffer) => resolve(d.toString())));
    ws.send(JSON.stringify([null, "1", "phoenix", "heartbeat", {}]));
    expect(await reply).toBe('[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]');
    ws.close();
  });
});

describe("closing", () => {
  it("answers a close like Bandit: 1000 without a reason, 1002 for a code a peer must not send", async () => {
    for (const [sent, answered] of [[1000, 1000], [1001, 1000], [4000, 1000], [1012, 1002]] as const) {
      const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
      c.ws.close(sent, "bye");
      await waitFor("the close", () => c.closed !== undefined);
      expect({ sent, ...c.closed }).toEqual({ sent, code: answered, reason: "" });
    }
  });
});

describe("load-test extras", () => {
  it("pads a room:* join reply with reply_bytes bytes", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "room:big", "phx_join", { reply_bytes: 5000 }]);
    const [reply] = (await c.json()) as [[string, string, string, string, { response: { data: string }; status: string }]];
    expect(reply[4].status).toBe("ok");
    expect(reply[4].response.data).toBe("x".repeat(5000));
    c.ws.close();
  });

  it("echoes JSON and binary payloads on any joined channel", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "room:echo", "phx_join", {}]);
    c.send(["2", "2", "patterns:echo", "phx_join", {}]);
    await c.next(2);
    c.send(["1", "3", "room:echo", "echo", { n: 1, s: "abc" }]);
    c.send(["2", "4", "patterns:echo", "echo", { n: 2 }]);
    expect(await c.json(2)).toEqual([
      ["1", "3", "room:echo", "phx_reply", { response: { n: 1, s: "abc" }, status: "ok" }],
      ["2", "4", "patterns:echo", "phx_reply", { response: { n: 2 }, status: "ok" }],
    ]);
    // Binary push: 0, sizes, join_ref "1", ref "5", topic, event "echo", payload.
    const fields = ["1", "5", "room:echo", "echo"].map((f) => Buffer.from(f));
    c.send(Buffer.concat([Buffer.from([0, ...fields.map((f) => f.length)]), ...fields, Buffer.from([1, 2, 3])]));
    const [bin] = await c.next();
    expect(Buffer.isBuffer(bin)).toBe(true);
    const reply = Buffer.concat([Buffer.from([1, 1, 1, 9, 2]), Buffer.from("15room:echook"), Buffer.from([1, 2, 3])]);
    expect((bin as Buffer).equals(reply)).toBe(true);
    c.ws.close();
  });
});

describe("bad input", () => {
  it("closes with 1011 on a frame it cannot decode and drops that socket's channels", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "room:bad", "phx_join", {}]);
    await c.next();
    expect(server.count()).toBe(1);
    c.send("{not json");
    await waitFor("the close", () => c.closed !== undefined);
    expect(c.closed?.code).toBe(1011);
    expect(server.count()).toBe(0);
  });

  it("closes with 1011 on a vsn 2 message that is not a 5-element array", async () => {
    const c = await RawClient.open("/socket/websocket?vsn=2.0.0");
    c.send(["1", "1", "room:bad"]);
    await waitFor("the close", () => c.closed !== undefined);
    expect(c.closed?.code).toBe(1011);
  });
});

describe("long-poll edges", () => {
  it("answers a new session with an unknown vsn with {status: 403} in an HTTP 200", async () => {
    const res = await http("GET", "/socket/longpoll?vsn=7.0.0");
    expect(res.status).toBe(200);
    expect(res.body).toBe('{"status":403}');
  });

  it("answers a POST with an unknown or forged token with {status: 410}", async () => {
    expect((await http("POST", "/socket/longpoll?vsn=2.0.0&token=SFMyNTY.abc.def", "[]")).body).toBe('{"status":410}');
    expect((await http("POST", "/socket/longpoll?vsn=2.0.0", "[]")).body).toBe('{"status":410}');
  });

  it("answers a CORS preflight and refuses other methods with 400", async () => {
    const pre = await http("OPTIONS", "/socket/longpoll?vsn=2.0.0", undefined, { "access-control-request-headers": "content-type" });
    expect(pre.status).toBe(200);
    expect(pre.headers["access-control-allow-methods"]).toBe("get, post, options");
    expect(pre.headers["access-control-allow-headers"]).toBe("content-type");
    expect((await http("PUT", "/socket/longpoll?vsn=2.0.0")).status).toBe(400);
  });

  it("starts a new session when a GET carries the token of a session that is gone", async () => {
    const s = await startPhoenixServer({ longpollWindowMs: 50, longpollIdleTimeoutMs: 60 });
    try {
      const first = JSON.parse((await http("GET", "/socket/longpoll?vsn=2.0.0", undefined, {}, s)).body) as { token: string; status: number };
      expect(first.status).toBe(410);
      await waitFor("the idle session to go", () => s.longpollSessions() === 0);
      const again = JSON.parse((await http("GET", `/socket/longpoll?vsn=2.0.0&token=${first.token}`, undefined, {}, s)).body) as { token: string; status: number };
      expect(again.status).toBe(410);
      expect(again.token).not.toBe(first.token);
    } finally {
      await s.close();
    }
  });

  it("carries a binary push over ndjson as a base64 line", async () => {
    const s = await startPhoenixServer({ longpollWindowMs: 1000 });
    try {
      const { token } = JSON.parse((await http("GET", "/socket/longpoll?vsn=2.0.0", undefined, {}, s)).body) as { token: string };
      const path = `/socket/longpoll?vsn=2.0.0&token=${token}`;
      const fields = ["1", "2", "room:lp", "echo"].map((f) => Buffer.from(f));
      const bin = Buffer.concat([Buffer.from([0, ...fields.map((f) => f.length)]), ...fields, Buffer.from("hi")]);
      const body = `["1","1","room:lp","phx_join",{}]\n${bin.toString("base64")}`;
      expect((await http("POST", path, body, { "content-type": "application/x-ndjson" }, s)).body).toBe('{"status":200}');
      const poll = JSON.parse((await http("GET", path, undefined, {}, s)).body) as { messages: string[]; status: number };
      expect(poll.status).toBe(200);
      expect(poll.messages[0]).toBe('["1","1","room:lp","phx_reply",{"response":{},"status":"ok"}]');
      const reply = Buffer.from(poll.messages[1] ?? "", "base64");
      expect(reply[0]).toBe(1);
      expect(reply.subarray(reply.length - 2).toString()).toBe("hi");
      expect(s.count()).toBe(1);
    } finally {
      await s.close();
    }
  });
});

describe("scale and shutdown", () => {
  it("holds 1,000 websocket connections each joined to a room and counts them exactly", async () => {
    const s = await startPhoenixServer();
    const clients: RawClient[] = [];
    try {
      for (let batch = 0; batch < 10; batch++) {
        clients.push(...(await Promise.all(Array.from({ length: 100 }, () => RawClient.open("/socket/websocket?vsn=2.0.0", s)))));
      }
      clients.forEach((c, i) => c.send([String(i), String(i), `room:${i % 10}`, "phx_join", {}]));
      await waitFor("1,000 joins", () => s.count() === 1000, 20_000);
      expect(s.sockets()).toBe(1000);
      expect(Object.values(s.countByTopic())).toEqual(Array(10).fill(100));
      for (const c of clients.slice(0, 500)) c.ws.terminate();
      await waitFor("500 sockets to go", () => s.count() === 500 && s.sockets() === 500, 20_000);
    } finally {
      for (const c of clients) c.ws.terminate();
      await s.close();
    }
    expect(s.count()).toBe(0);
  });

  it("close() drops every websocket and long-poll session at once and stops listening", async () => {
    const s = await startPhoenixServer({ longpollWindowMs: 5000 });
    const a = await RawClient.open("/socket/websocket?vsn=2.0.0", s);
    const b = await RawClient.open("/socketz/websocket?vsn=1.0.0", s);
    a.send(["1", "1", "room:x", "phx_join", {}]);
    b.send({ topic: "room:y", event: "phx_join", payload: {}, ref: "1", join_ref: "1" });
    await a.next();
    await b.next();
    const { token } = JSON.parse((await http("GET", "/socket/longpoll?vsn=2.0.0", undefined, {}, s)).body) as { token: string };
    const held = http("GET", `/socket/longpoll?vsn=2.0.0&token=${token}`, undefined, {}, s).catch((err: Error) => err);
    await waitFor("the held poll", () => s.longpollSessions() === 1);
    expect(s.count()).toBe(2);
    await s.close();
    expect(s.count()).toBe(0);
    expect(s.sockets()).toBe(0);
    expect(s.longpollSessions()).toBe(0);
    await waitFor("both clients to see the close", () => a.closed !== undefined && b.closed !== undefined);
    expect(a.closed?.code).toBe(1006);
    expect(await held).toBeInstanceOf(Error);
    await expect(http("GET", "/healthz", undefined, {}, s)).rejects.toThrow();
  });
});
