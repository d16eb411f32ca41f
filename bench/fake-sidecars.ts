// A child process for the operator benchmark: N sidecar admin APIs on loopback, one per
// simulated pod at 127.1.x.y:<port> (all of 127/8 is loopback on Linux, so no setup), each
// answering GET /stats like a busy sidecar (its counts move by one or two between scrapes, and
// it reports the config revision it holds) and PUT/DELETE /config like one that accepts (a
// new revision each time, as sidecar/admin/pushed-config.ts answers).
// Prints "ready <n>" once all listen; exits when its parent does (stdin closes).
import http from "node:http";

const count = Number(process.argv[2] ?? 1000);
const port = Number(process.argv[3] ?? 9090);

/** The pod's address: 127.1.<i/250>.<i%250+1>. */
export function fakePodIp(i: number): string {
  return `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

/** The body of the baselines' PUT /config. */
export const BASELINE_PUT = JSON.stringify({ ttlSeconds: 15 });

function statsBody(i: number, scrape: number, held: { source: string; revision: string }): string {
  const connections = 50 + ((i * 37) % 200) + ((i + scrape) % 3);
  const topics: Record<string, number> = { "room:*": connections, "presence:*": Math.floor(connections / 2) };
  for (let t = 0; t < 20; t++) topics[`match:${(i * 7 + t) % 500}`] = 1 + ((i + t) % 5);
  const channels = Object.values(topics).reduce((a, b) => a + b, 0);
  return JSON.stringify({ connections, channels, longpoll: i % 3, topics, ready: true, draining: false, maxConnections: 0, unparsedMessages: 0, config: held });
}

async function main(): Promise<void> {
  const servers: http.Server[] = [];
  for (let i = 0; i < count; i++) {
    let scrapes = 0;
    let changes = 0;
    let held = { source: "flags", revision: `${i}.0` };
    const server = http.createServer((req, res) => {
      const body: Buffer[] = [];
      req.on("data", (c: Buffer) => body.push(c));
      req.on("end", () => {
        // The baselines' PUT ({"ttlSeconds":15}) is answered alike but leaves the held config
        // alone, so the operator's cycles see only their own pushes.
        const baseline = Buffer.concat(body).toString() === BASELINE_PUT;
        if (req.method !== "GET" && !baseline) held = { source: req.method === "PUT" ? "pushed" : "flags", revision: `${i}.${++changes}` };
        const out = req.method === "GET" ? statsBody(i, scrapes++, held) : JSON.stringify(held);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
        res.end(out);
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, fakePodIp(i), () => resolve());
    });
    servers.push(server);
  }
  console.log(`ready ${servers.length}`);
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
}

if (process.argv[1]?.endsWith("fake-sidecars.js")) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
