// The client side of every recorded websocket scenario is replayed byte for byte against the
// test server; what the server sends back must equal what Phoenix 1.7.21 sent (frame by frame,
// in order, per connection; text compared exactly, which is stricter than parsed JSON), and its
// channel count must match the real server's /count at each labelled point.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPhoenixServer } from "../../support/phoenix-server/index.js";
import type { PhoenixServer } from "../../support/phoenix-server/index.js";
import { loadTrace } from "../../support/phoenix-server/replay/trace.js";
import type { ServerCount } from "../../support/phoenix-server/replay/trace.js";
import { replayWebSocketTrace } from "../../support/phoenix-server/replay/ws-replay.js";
import { replayWithWsClient } from "../../support/phoenix-server/replay/ws-client-replay.js";
import { sleep } from "../../support/wait.js";

/** One-connection scenarios whose client was a raw ws socket writing the protocol by hand. */
const RAW_CLIENT_TRACES = [
  "s01-basic-v2-raw",
  "s01-basic-v1",
  "s01-basic-v1-nojoinref",
  "s02-denied-v1",
  "s03-duplicate-join-v2-raw",
  "s03-duplicate-join-v1",
  "s04-crash-v1",
  "s05-stop-v1",
  "s08-abrupt-rst-v2-raw",
  "s09-compressed-v1",
];

const WEBSOCKET_TRACES = [
  "s01-basic-v2",
  "s01-basic-v2-raw",
  "s01-basic-v1",
  "s01-basic-v1-nojoinref",
  "s02-denied-v2",
  "s02-denied-v1",
  "s03-duplicate-join-v2-raw",
  "s03-duplicate-join-v2-js",
  "s03-duplicate-join-v1",
  "s04-crash-v2",
  "s04-crash-v1",
  "s05-stop-v2",
  "s05-stop-v1",
  "s06-broadcast-3sockets-v2",
  "s06-broadcast-mixed-vsn",
  "s07-binary-v2",
  "s08-abrupt-fin-v2-js",
  "s08-abrupt-rst-v2-raw",
  "s08-close-while-joined-v2",
  "s09-compressed-v2",
  "s09-compressed-v1",
  "s09-nocompress-offer-declined",
];

let server: PhoenixServer;

beforeAll(async () => {
  server = await startPhoenixServer();
});

afterAll(async () => {
  await server.close();
});

/** The server's counts as the real /count reported them. */
function snapshot(): Pick<ServerCount, "total" | "topics" | "websocket_connections"> {
  return { total: server.count(), topics: server.countByTopic(), websocket_connections: server.sockets() };
}

/** Waits (up to 1 s) for the counts a labelled point recorded, then asserts them. */
async function expectCounts(point: ServerCount): Promise<void> {
  const want = { total: point.total, topics: point.topics, websocket_connections: point.websocket_connections };
  const deadline = Date.now() + 1000;
  while (JSON.stringify(snapshot()) !== JSON.stringify(want) && Date.now() < deadline) await sleep(2);
  expect({ label: point.label, ...snapshot() }).toEqual({ label: point.label, ...want });
}

describe("replaying recorded Phoenix 1.7.21 websocket traces", () => {
  for (const name of WEBSOCKET_TRACES) {
    const trace = loadTrace(name);
    it(`answers ${name} as Phoenix did: ${trace.meta.description}`, async () => {
      const checked: string[] = [];
      const result = await replayWebSocketTrace(trace, { host: server.host, port: server.port }, {
        checkpoint: async (point) => {
          await expectCounts(point);
          checked.push(point.label);
        },
      });
      expect(result.received).toEqual(result.expected);
      expect(checked).toEqual(trace.meta.server_counts.map((p) => p.label));
    });
  }
});

describe("re-sending recorded client frames with a ws client", () => {
  for (const name of RAW_CLIENT_TRACES) {
    const trace = loadTrace(name);
    it(`answers the frames of ${name} with the recorded messages, in order`, async () => {
      const checked: string[] = [];
      const result = await replayWithWsClient(trace, { host: server.host, port: server.port }, {
        checkpoint: async (point) => {
          await expectCounts(point);
          checked.push(point.label);
        },
      });
      expect(result.received).toEqual(result.expected);
      expect(result.expected.length).toBeGreaterThan(1);
      expect(checked).toEqual(trace.meta.server_counts.map((p) => p.label));
    });
  }
});
