import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseStats, SidecarClient, SidecarError, staticTokens, type AdminTokenSource } from "../../../../operator/scrape/sidecar-client.js";
import { MAX_STATS_BYTES, MAX_STATS_TOPICS } from "../../../../sidecar/admin/contract.js";

/** The namespace and policy lane of a call. */
const S = { namespace: "ns", policy: "ns/p" };

function errorOf(fn: () => unknown): SidecarError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error("expected an error");
}

describe("parseStats", () => {
  it("reads connections, channels, long-poll sessions and topics", () => {
    expect(parseStats({ connections: 3, channels: 5, longpoll: 1, topics: { "room:*": 4, lobby: 1 }, ready: true }, "x")).toEqual({
      connections: 3, channels: 5, longpoll: 1, topics: { "room:*": 4, lobby: 1 },
    });
  });

  it("takes a missing longpoll or topics as none (a sidecar without long-poll support)", () => {
    expect(parseStats({ connections: 3, channels: 5 }, "x")).toEqual({ connections: 3, channels: 5, longpoll: 0, topics: {} });
  });

  it("reads attempt counters and refuses a bad one with code bad_count", () => {
    expect(parseStats({ connections: 1, channels: 1, attempts: { upgrades: 7, joins: 9 } }, "x").attempts).toEqual({ upgrades: 7, joins: 9 });
    expect(errorOf(() => parseStats({ connections: 1, channels: 1, attempts: { upgrades: -1, joins: 0 } }, "x")).code).toBe("bad_count");
    expect(errorOf(() => parseStats({ connections: 1, channels: 1, attempts: 5 }, "x")).code).toBe("bad_stats");
  });

  it("reads usage counters (seconds may be fractional) and refuses bad ones with code bad_usage", () => {
    const usage = { since: "2026-03-01T00:00:00.000Z", connectionSeconds: 12.5, channelSeconds: { "room:*": 3.25 } };
    expect(parseStats({ connections: 1, channels: 1, usage }, "x").usage).toEqual(usage);
    for (const bad of [{ ...usage, since: "yesterday" }, { ...usage, connectionSeconds: -1 }, { ...usage, channelSeconds: { a: "1" } }, [usage]]) {
      const err = errorOf(() => parseStats({ connections: 1, channels: 1, usage: bad }, "x"));
      expect(err.code).toBe("bad_usage");
    }
  });

  it.each([-1, "2", null, Infinity, 1.5, 2 ** 60])("refuses a topic count of %s with code bad_count, naming the topic", (v) => {
    const err = errorOf(() => parseStats({ connections: 0, channels: 0, topics: { "room:1": v, d: 2 } }, "x"));
    expect(err.code).toBe("bad_count");
    expect(err.message).toMatch(/topic "room:1" has .* not a count/);
  });

  it(`refuses more than ${MAX_STATS_TOPICS.toLocaleString("en")} topics with code too_many_topics`, () => {
    const topics = Object.fromEntries(Array.from({ length: MAX_STATS_TOPICS + 1 }, (_, i) => [`t${i}`, 1]));
    expect(errorOf(() => parseStats({ connections: 0, channels: 0, topics }, "x")).code).toBe("too_many_topics");
    delete topics.t0;
    expect(Object.keys(parseStats({ connections: 0, channels: 0, topics }, "x").topics)).toHaveLength(MAX_STATS_TOPICS);
  });

  it("counts a topic name over 1,024 characters under _other (clients choose topic names: not the sidecar's fault)", () => {
    const long = "room:" + "x".repeat(2000);
    expect(parseStats({ connections: 1, channels: 3, topics: { [long]: 2, _other: 1, lobby: 0 } }, "x").topics).toEqual({ _other: 3, lobby: 0 });
  });

  it("keeps a topic named __proto__ as a plain key", () => {
    const t = parseStats(JSON.parse('{"connections":0,"channels":1,"topics":{"__proto__":1}}'), "x").topics;
    expect(Object.entries(t)).toEqual([["__proto__", 1]]);
  });

  it.each([
    { what: "null", doc: null },
    { what: "a string", doc: "ok" },
    { what: "an array", doc: [] },
    { what: "an object without connections (not a connmeter sidecar)", doc: {} },
    { what: "no channels", doc: { connections: 1 } },
    { what: "topics that are a list", doc: { connections: 1, channels: 0, topics: [] } },
  ])("refuses $what with code bad_stats, naming the sidecar", ({ doc }) => {
    const err = errorOf(() => parseStats(doc, "198.18.0.7:9090"));
    expect(err.code).toBe("bad_stats");
    expect(err.message).toContain("198.18.0.7:9090");
  });

  it.each([
    { what: "negative connections", doc: { connections: -1, channels: 0 } },
    { what: "string connections", doc: { connections: "3", channels: 0 } },
    { what: "non-finite channels", doc: { connections: 1, channels: Infinity } },
    { what: "fractional channels", doc: { connections: 1, channels: 2.5 } },
    { what: "a negative longpoll", doc: { connections: 1, channels: 0, longpoll: -2 } },
  ])("refuses $what with code bad_count, naming the sidecar", ({ doc }) => {
    const err = errorOf(() => parseStats(doc, "198.18.0.7:9090"));
    expect(err.code).toBe("bad_count");
    expect(err.message).toContain("198.18.0.7:9090");
  });
});

interface Seen { method: string; url: string; authorization: string | undefined; body: string; remotePort: number | undefined }

describe("SidecarClient against a real HTTP server", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

  async function serve(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ port: number; seen: Seen[]; connections: () => number; server: Server }> {
    const seen: Seen[] = [];
    let connections = 0;
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => { body += c.toString(); });
      req.on("end", () => {
        seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body, remotePort: req.socket.remotePort });
        handler(req, res, body);
      });
    });
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    return { port: (server.address() as AddressInfo).port, seen, connections: () => connections, server };
  }

  function client(token: string | null = "tok") {
    const c = new SidecarClient({ maxConcurrent: 4, tokens: staticTokens(token ?? undefined) });
    cleanups.push(() => c.close());
    return c;
  }

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  async function codeOf(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(SidecarError);
      return (err as SidecarError).code;
    }
    throw new Error("expected the call to fail");
  }

  it("GET /stats answers a sample, with the bearer token (the sidecar guards topic names with it)", async () => {
    const s = await serve((_q, res) => json(res, 200, { connections: 2, channels: 7, longpoll: 1, topics: { "room:*": 7 } }));
    const sample = await client().stats("127.0.0.1", s.port, 1000, S);
    expect(sample).toEqual({ connections: 2, channels: 7, longpoll: 1, topics: { "room:*": 7 } });
    expect(s.seen).toEqual([expect.objectContaining({ method: "GET", url: "/stats", authorization: "Bearer tok" })]);
  });

  it("PUT /config sends the config as JSON with the bearer token; DELETE /config sends the token too", async () => {
    const s = await serve((_q, res) => json(res, 200, {}));
    const c = client("s3cret");
    await c.pushConfig("127.0.0.1", s.port, { connectionBudget: 40, topics: [{ match: "room:*", maxChannels: 3 }], ttlSeconds: 15 }, 1000, S);
    await c.resetConfig("127.0.0.1", s.port, 1000, S);
    expect(s.seen.map((r) => [r.method, r.url, r.authorization])).toEqual([
      ["PUT", "/config", "Bearer s3cret"],
      ["DELETE", "/config", "Bearer s3cret"],
    ]);
    expect(JSON.parse(s.seen[0]!.body)).toEqual({ connectionBudget: 40, topics: [{ match: "room:*", maxChannels: 3 }], ttlSeconds: 15 });
  });

  it("sends no authorization header when no token is configured", async () => {
    const s = await serve((_q, res) => json(res, 200, {}));
    await client(null).pushConfig("127.0.0.1", s.port, { ttlSeconds: 15 }, 1000, S);
    expect(s.seen[0]!.authorization).toBeUndefined();
  });

  it.each([401, 404, 503])("a %s answer fails with code http_<status>", async (status) => {
    const s = await serve((_q, res) => json(res, status, { error: "no" }));
    expect(await codeOf(client().stats("127.0.0.1", s.port, 1000, S))).toBe(`http_${status}`);
    expect(await codeOf(client().pushConfig("127.0.0.1", s.port, { ttlSeconds: 1 }, 1000, S))).toBe(`http_${status}`);
  });

  it("a body that is not JSON fails with code bad_json", async () => {
    const s = await serve((_q, res) => { res.writeHead(200); res.end("<html>"); });
    expect(await codeOf(client().stats("127.0.0.1", s.port, 1000, S))).toBe("bad_json");
  });

  it("a sidecar that never answers fails with code timeout, within the timeout", async () => {
    const s = await serve(() => undefined);
    const t0 = performance.now();
    expect(await codeOf(client().stats("127.0.0.1", s.port, 150, S))).toBe("timeout");
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(1000);
  });

  it("a sidecar that dribbles its answer past the deadline fails with code timeout", async () => {
    const s = await serve((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("{");
      const t = setInterval(() => res.write(" "), 40);
      res.on("close", () => clearInterval(t));
    });
    expect(await codeOf(client().stats("127.0.0.1", s.port, 200, S))).toBe("timeout");
  });

  it("a closed port fails with code refused", async () => {
    const s = await serve(() => undefined);
    const port = s.port;
    await new Promise<void>((r) => s.server.close(() => r()));
    expect(await codeOf(client().stats("127.0.0.1", port, 1000, S))).toBe("refused");
  });

  it("keeps the connection alive: sequential calls reuse one socket", async () => {
    const s = await serve((_q, res) => json(res, 200, { connections: 0, channels: 0 }));
    const c = client();
    await c.stats("127.0.0.1", s.port, 1000, S);
    await c.pushConfig("127.0.0.1", s.port, { ttlSeconds: 1 }, 1000, S);
    await c.stats("127.0.0.1", s.port, 1000, S);
    expect(s.seen).toHaveLength(3);
    expect(s.connections()).toBe(1);
    expect(new Set(s.seen.map((r) => r.remotePort)).size).toBe(1);
  });

  it(`stops reading an answer over ${MAX_STATS_BYTES} bytes and fails with code too_large`, async () => {
    const declared = await serve((_q, res) => { res.writeHead(200, { "content-length": MAX_STATS_BYTES + 1 }); res.write("{"); });
    expect(await codeOf(client().stats("127.0.0.1", declared.port, 5000, S))).toBe("too_large");
    const chunked = await serve((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      const piece = " ".repeat(64 * 1024);
      const more = (): void => { while (res.write(piece)); };
      res.on("drain", more);
      more();
    });
    expect(await codeOf(client().stats("127.0.0.1", chunked.port, 5000, S))).toBe("too_large");
  });

  it("after a 401, reads the namespace's token again and retries once with the new one", async () => {
    const s = await serve((q, res) => (q.headers.authorization === "Bearer new" ? json(res, 200, { connections: 1, channels: 0 }) : json(res, 401, { error: "wrong token" })));
    let current = "old";
    const refused: string[] = [];
    const tokens: AdminTokenSource = {
      token: (ns) => Promise.resolve(ns === "ns" ? current : "other"),
      refused: (ns, token) => { refused.push(`${ns}:${token}`); current = "new"; },
    };
    const c = new SidecarClient({ maxConcurrent: 2, tokens });
    cleanups.push(() => c.close());
    expect(await c.stats("127.0.0.1", s.port, 1000, S)).toMatchObject({ connections: 1 });
    expect(refused).toEqual(["ns:old"]);
    expect(s.seen.map((r) => r.authorization)).toEqual(["Bearer old", "Bearer new"]);
    // A token that stays wrong fails with http_401 after one retry at most.
    current = "old";
    const stuck: AdminTokenSource = { token: () => Promise.resolve("old"), refused: () => undefined };
    const c2 = new SidecarClient({ maxConcurrent: 2, tokens: stuck });
    cleanups.push(() => c2.close());
    expect(await codeOf(c2.stats("127.0.0.1", s.port, 1000, S))).toBe("http_401");
  });
});
