import { describe, expect, it } from "vitest";
import { createMetrics } from "../../../sidecar/admin/metrics.js";
import { KIND_WEBSOCKET } from "../../../sidecar/ledger/channel-ledger.js";
import { DEFAULT_LIMITS } from "../../../sidecar/limits/admission.js";
import { OTHER_TOPICS, Sidecar } from "../../../sidecar/sidecar.js";

const TOPICS = 100_000;

function sidecarWithTopics(groups: { match: string }[]) {
  const sidecar = new Sidecar({
    listen: { host: "127.0.0.1", port: 0 },
    upstream: "http://127.0.0.1:1",
    limits: DEFAULT_LIMITS,
    topics: groups,
    maxTopicLabels: 100,
    longpollTimeoutSeconds: 20,
  });
  const socket = sidecar.ledger.openSocket(KIND_WEBSOCKET);
  for (let i = 0; i < TOPICS; i++) {
    const ref = String(i);
    const topic = i % 2 === 0 ? `room:${i}` : `user:${i}`;
    socket.onClientMessage({ joinRef: ref, ref, topic, event: "phx_join", status: null });
    socket.onServerMessage({ joinRef: ref, ref, topic, event: "phx_reply", status: "ok" });
  }
  return sidecar;
}

describe("topic label cardinality", () => {
  it(`folds ${TOPICS.toLocaleString("en")} distinct topics into groups, 100 named topics and _other, in /stats and /metrics`, async () => {
    const sidecar = sidecarWithTopics([{ match: "room:*" }]);
    expect(sidecar.ledger.channels).toBe(TOPICS);
    const topics = sidecar.stats().topics;
    expect(Object.keys(topics)).toHaveLength(1 + 100 + 1);
    expect(topics["room:*"]).toBe(TOPICS / 2);
    expect(topics[OTHER_TOPICS]).toBe(TOPICS / 2 - 100);
    expect(Object.values(topics).reduce((a, b) => a + b, 0)).toBe(TOPICS);

    const text = await createMetrics(sidecar).metrics();
    const channelSeries = text.split("\n").filter((l) => l.startsWith("connmeter_channels{"));
    expect(channelSeries).toHaveLength(102);
    await sidecar.close();
  });
});
