import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DeadEndpoints } from "../../../../operator/scrape/dead-endpoints.js";
import { SidecarClient, staticTokens } from "../../../../operator/scrape/sidecar-client.js";

async function listen(server: Server, port = 0, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((r) => server.listen(port, host, r));
  return (server.address() as AddressInfo).port;
}

describe("one slow policy does not starve the others", () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  it("a policy with 40 silent sidecars (10 waves of timeouts at 4 slots) lets another policy's 3 scrapes through after at most one wave", async () => {
    let silentCalls = 0;
    // 40 pods that never answer, each its own endpoint (127.0.0.2 … 127.0.0.41, one port): each
    // call holds its slot the whole timeout.
    const silent = Array.from({ length: 40 }, () => createServer(() => { silentCalls++; }));
    const live = createServer((_q, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"connections":1,"channels":0}');
    });
    servers.push(...silent, live);
    const silentPort = await listen(silent[0]!, 0, "127.0.0.2");
    for (let i = 1; i < silent.length; i++) await listen(silent[i]!, silentPort, `127.0.0.${i + 2}`);
    const livePort = await listen(live);
    const client = new SidecarClient({ maxConcurrent: 4, tokens: staticTokens("t") });
    try {
      const dead = silent.map((_, i) =>
        client.stats(`127.0.0.${i + 2}`, silentPort, 150, { namespace: "a", policy: "a/dead" }).catch(() => "failed"));
      let silentCallsWhenLiveDone = -1;
      const alive = Promise.all([0, 1, 2].map(() => client.stats("127.0.0.1", livePort, 5000, { namespace: "b", policy: "b/live" })))
        .then((samples) => { silentCallsWhenLiveDone = silentCalls; return samples; });
      expect((await alive).map((s) => s.connections)).toEqual([1, 1, 1]);
      await Promise.all(dead);
      expect(silentCalls).toBe(40);
      // One wave of 4 timeouts, then the freed slots alternate between the two policies: the
      // live policy's 3 calls are done before the dead policy's third wave (FIFO: after all 40).
      expect(silentCallsWhenLiveDone).toBeLessThanOrEqual(8);
    } finally {
      client.close();
    }
  });
});

describe("DeadEndpoints", () => {
  it("marks an endpoint whose call got no answer, clears it at any answer, and forgets the oldest past its bound", () => {
    const d = new DeadEndpoints(2);
    d.failed("198.18.0.1:9090");
    expect(d.isSuspect("198.18.0.1:9090")).toBe(true);
    d.answered("198.18.0.1:9090");
    expect(d.isSuspect("198.18.0.1:9090")).toBe(false);
    for (const ip of ["198.18.0.1", "198.18.0.2", "198.18.0.3"]) d.failed(`${ip}:9090`);
    expect(d.size).toBe(2);
    expect(d.isSuspect("198.18.0.1:9090")).toBe(false);
    expect(d.isSuspect("198.18.0.3:9090")).toBe(true);
  });
});
