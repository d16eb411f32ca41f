import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseStats, SidecarClient, SidecarError } from "../../../../operator/scrape/sidecar-client.js";

describe("parseStats", () => {
  it("reads connections, channels, long-poll sessions and topics", () => {
    expect(parseStats({ connections: 3, channels: 5, longpoll: 1, topics: { "room:*": 4, lobby: 1 }, ready: true }, "x")).toEqual({
      connections: 3, channels: 5, longpoll: 1, topics: { "room:*": 4, lobby: 1 },
    });
  });

  it("takes a missing longpoll or topics as none (a sidecar without long-poll support)", () => {
    expect(parseStats({ connections: 3, channels: 5 }, "x")).toEqual({ connections: 3, channels: 5, longpoll: 0, topics: {} });
  });

  it("drops topic entries that are not counts", () => {
    expect(parseStats({ connections: 0, channels: 0, topics: { a: -1, b: "2", c: null, d: 2, e: Infinity } }, "x").topics).toEqual({ d: 2 });
  });

  it.each([
    { what: "null", doc: null },
    { what: "a string", doc: "ok" },
    { what: "an array", doc: [] },
    { what: "an object without connections (not a connmeter sidecar)", doc: {} },
    { what: "no channels", doc: { connections: 1 } },
    { what: "negative connections", doc: { connections: -1, channels: 0 } },
    { what: "string connections", doc: { connections: "3", channels: 0 } },
    { what: "non-finite channels", doc: { connections: 1, channels: Infinity } },
    { what: "a negative longpoll", doc: { connections: 1, channels: 0, longpoll: -2 } },
  ])("refuses $what with code bad_stats, naming the sidecar", ({ doc }) => {
    let err: unknown;
    try { parseStats(doc, "198.18.0.7:9090"); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe("bad_stats");
    expect((err as Error).message).toContain("198.18.0.7:9090");
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
    const c = new SidecarClient({ maxConcurrent: 4, token: token ?? undefined });
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

  it("GET /stats answers a sample, with no bearer token", async () => {
    const s = await serve((_q, res) => json(res, 200, { connections: 2, channels: 7, longpoll: 1, topics: { "room:*": 7 } }));
    const sample = await client().stats("127.0.0.1", s.port, 1000);
    expect(sample).toEqual({ connections: 2, channels: 7, longpoll: 1, topics: { "room:*": 7 } });
    expect(s.seen).toEqual([expect.objectContaining({ method: "GET", url: "/stats", authorization: undefined })]);
  });

  it("PUT /config sends the config as JSON with the bearer token; DELETE /config sends the token too", async () => {
    const s = await serve((_q, res) => json(res, 200, {}));
    const c = client("s3cret");
    await c.pushConfig("127.0.0.1", s.port, { connectionBudget: 40, topics: [{ match: "room:*", maxChannels: 3 }], ttlSeconds: 15 }, 1000);
    await c.resetConfig("127.0.0.1", s.port, 1000);
    expect(s.seen.map((r) => [r.method, r.url, r.authorization])).toEqual([
      ["PUT", "/config", "Bearer s3cret"],
      ["DELETE", "/config", "Bearer s3cret"],
    ]);
    expect(JSON.parse(s.seen[0]!.body)).toEqual({ connectionBudget: 40, topics: [{ match: "room:*", maxChannels: 3 }], ttlSeconds: 15 });
  });

  it("sends no authorization header when no token is configured", async () => {
    const s = await serve((_q, res) => json(res, 200, {}));
    await client(null).pushConfig("127.0.0.1", s.port, { ttlSeconds: 15 }, 1000);
    expect(s.seen[0]!.authorization).toBeUndefined();
  });

  it.each([401, 404, 503])("a %s answer fails with code http_<status>", async (status) => {
    const s = await serve((_q, res) => json(res, status, { error: "no" }));
    expect(await codeOf(client().stats("127.0.0.1", s.port, 1000))).toBe(`http_${status}`);
    expect(await codeOf(client().pushConfig("127.0.0.1", s.port, { ttlSeconds: 1 }, 1000))).toBe(`http_${status}`);
  });

  it("a body that is not JSON fails with code bad_json", async () => {
    const s = await serve((_q, res) => { res.writeHead(200); res.end("<html>"); });
    expect(await codeOf(client().stats("127.0.0.1", s.port, 1000))).toBe("bad_json");
  });

  it("a sidecar that never answers fails with code timeout, within the timeout", async () => {
    const s = await serve(() => undefined);
    const t0 = performance.now();
    expect(await codeOf(client().stats("127.0.0.1", s.port, 150))).toBe("timeout");
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
    expect(await codeOf(client().stats("127.0.0.1", s.port, 200))).toBe("timeout");
  });

  it("a closed port fails with code refused", async () => {
    const s = await serve(() => undefined);
    const port = s.port;
    await new Promise<void>((r) => s.server.close(() => r()));
    expect(await codeOf(client().stats("127.0.0.1", port, 1000))).toBe("refused");
  });

  it("keeps the connection alive: sequential calls reuse one socket", async () => {
    const s = await serve((_q, res) => json(res, 200, { connections: 0, channels: 0 }));
    const c = client();
    await c.stats("127.0.0.1", s.port, 1000);
    await c.pushConfig("127.0.0.1", s.port, { ttlSeconds: 1 }, 1000);
    await c.stats("127.0.0.1", s.port, 1000);
    expect(s.seen).toHaveLength(3);
    expect(s.connections()).toBe(1);
    expect(new Set(s.seen.map((r) => r.remotePort)).size).toBe(1);
  });
});
