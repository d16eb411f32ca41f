import { describe, expect, it } from "vitest";
import {
  aggregate, MAX_STATUS_PODS, MAX_STATUS_TOPICS, type PodObservation, type SidecarSample,
} from "../../../../operator/aggregate/aggregate.js";

const sample = (connections: number, channels: number, topics: Record<string, number> = {}, longpoll = 0): SidecarSample =>
  ({ connections, channels, longpoll, topics });

const pod = (name: string, s: SidecarSample | undefined, opts: Partial<Omit<PodObservation, "name" | "sample">> = {}): PodObservation =>
  ({ name, node: "node-a", ready: true, stale: false, sample: s, ...opts });

describe("aggregate: totals", () => {
  it.each([
    { what: "no pods", pods: [], connections: 0, channels: 0, longpoll: 0 },
    { what: "one pod", pods: [pod("a", sample(3, 5))], connections: 3, channels: 5, longpoll: 0 },
    { what: "long-poll sessions count as connections", pods: [pod("a", sample(3, 5, {}, 2))], connections: 5, channels: 5, longpoll: 2 },
    { what: "sums over pods", pods: [pod("a", sample(3, 5, {}, 1)), pod("b", sample(10, 1))], connections: 14, channels: 6, longpoll: 1 },
    { what: "a stale pod with last known counts is included", pods: [pod("a", sample(3, 5)), pod("b", sample(7, 2), { stale: true })], connections: 10, channels: 7, longpoll: 0 },
    { what: "a pod with unknown counts adds nothing (and is not counted as zero elsewhere)", pods: [pod("a", sample(3, 5)), pod("b", undefined, { stale: true })], connections: 3, channels: 5, longpoll: 0 },
  ])("$what", ({ pods, connections, channels, longpoll }) => {
    const agg = aggregate(pods, []);
    expect({ connections: agg.connections, channels: agg.channels, longpoll: agg.longpoll }).toEqual({ connections, channels, longpoll });
  });

  it("counts metered pods, and lists stale and unknown pods by name", () => {
    const agg = aggregate([
      pod("fresh", sample(1, 1)),
      pod("old", sample(2, 2), { stale: true }),
      pod("never", undefined, { stale: true }),
    ], []);
    expect(agg.meteredPods).toBe(1);
    expect(agg.stalePods).toEqual(["old", "never"]);
    expect(agg.unknownPods).toEqual(["never"]);
  });

  it("records each pod's connections (long-poll included) for budgets and deletion costs, and none for unknown pods", () => {
    const agg = aggregate([pod("a", sample(4, 0, {}, 1)), pod("b", undefined, { stale: true })], []);
    expect(agg.podConnections.get("a")).toBe(5);
    expect(agg.podConnections.has("b")).toBe(false);
  });
});

describe("aggregate: topics", () => {
  const groups = [{ match: "room:*", maxChannels: 100 }, { match: "user:*" }];

  it("lists the policy's groups first in spec order with their caps, then the busiest other topics, then _other", () => {
    const agg = aggregate([
      pod("a", sample(1, 0, { "user:*": 4, "room:*": 2, "lobby": 9, "misc": 1, _other: 3 })),
      pod("b", sample(1, 0, { "lobby": 1, "news": 5 })),
    ], groups);
    expect(agg.topics).toEqual([
      { name: "room:*", channels: 2, maxChannels: 100 },
      { name: "user:*", channels: 4 },
      { name: "lobby", channels: 10 },
      { name: "news", channels: 5 },
      { name: "misc", channels: 1 },
      { name: "_other", channels: 3 },
    ]);
  });

  it("lists a group with no channels (the cap is still shown) but leaves out _other when nothing is in it", () => {
    const agg = aggregate([pod("a", sample(1, 0, {}))], groups);
    expect(agg.topics).toEqual([{ name: "room:*", channels: 0, maxChannels: 100 }, { name: "user:*", channels: 0 }]);
  });

  it("groups raw topic keys (a sidecar that has not received the groups yet) by the same globs as the sidecar", () => {
    const agg = aggregate([
      pod("a", sample(1, 0, { "room:1": 2, "room:2": 3, "user:9": 1, "room:x:y/z": 1 })),
      pod("b", sample(1, 0, { "room:*": 5 })),
    ], groups);
    expect(agg.topics.slice(0, 2)).toEqual([{ name: "room:*", channels: 11, maxChannels: 100 }, { name: "user:*", channels: 1 }]);
    expect(agg.topics).toHaveLength(2);
  });

  it("a topic belongs to the first group whose glob matches it", () => {
    const agg = aggregate([pod("a", sample(1, 0, { "room:lobby": 2 }))], [{ match: "room:*" }, { match: "room:lobby" }]);
    expect(agg.topics).toEqual([{ name: "room:*", channels: 2 }, { name: "room:lobby", channels: 0 }]);
  });

  it.each([
    { glob: "user:{a,b}", raw: "user:a" },
    { glob: "room:[0-9]*", raw: "room:7" },
    { glob: "!(admin)*", raw: "lobby" },
  ])("counts a sidecar's group key $glob (reported by name once the groups were pushed) in that group", ({ glob, raw }) => {
    const agg = aggregate([
      pod("pushed", sample(1, 0, { [glob]: 4 })),
      pod("raw", sample(1, 0, { [raw]: 1 })),
    ], [{ match: glob, maxChannels: 10 }]);
    expect(agg.topics).toEqual([{ name: glob, channels: 5, maxChannels: 10 }]);
    expect(agg.podGroupChannels.get("pushed")?.[0]).toBe(4);
  });

  it("keeps per-pod group channels for the group budgets", () => {
    const agg = aggregate([
      pod("a", sample(1, 0, { "room:1": 2, "user:1": 7 })),
      pod("b", sample(1, 0, { "room:*": 5 })),
    ], groups);
    expect([...agg.podGroupChannels.get("a")!]).toEqual([2, 7]);
    expect([...agg.podGroupChannels.get("b")!]).toEqual([5, 0]);
  });

  it("bounds the list to 65 entries: the busiest named topics, everything past them summed into _other", () => {
    const topics: Record<string, number> = {};
    for (let i = 0; i < 100; i++) topics[`t:${String(i).padStart(3, "0")}`] = i + 1;
    topics._other = 1000;
    const agg = aggregate([pod("a", sample(1, 0, topics))], [{ match: "g:*" }]);
    expect(agg.topics).toHaveLength(MAX_STATUS_TOPICS);
    expect(agg.topics[0]).toEqual({ name: "g:*", channels: 0 });
    // 65 - 1 group - 1 _other = 63 named topics: the 63 busiest, t:099 (100) down to t:037 (38).
    expect(agg.topics[1]).toEqual({ name: "t:099", channels: 100 });
    expect(agg.topics[63]).toEqual({ name: "t:037", channels: 38 });
    const dropped = Array.from({ length: 37 }, (_, i) => i + 1).reduce((a, b) => a + b, 0);
    expect(agg.topics[64]).toEqual({ name: "_other", channels: 1000 + dropped });
    const sum = agg.topics.reduce((s, t) => s + t.channels, 0);
    expect(sum).toBe(Object.values(topics).reduce((a, b) => a + b, 0));
  });

  it("orders named topics of equal count by name, so the list is stable across scrapes", () => {
    const agg = aggregate([pod("a", sample(1, 0, { b: 3, c: 3, a: 3 }))], []);
    expect(agg.topics.map((t) => t.name)).toEqual(["a", "b", "c"]);
  });
});

describe("aggregate: pods", () => {
  it("puts stale pods first, then not-ready pods, then the busiest, name breaking ties", () => {
    const agg = aggregate([
      pod("busy", sample(50, 0)),
      pod("quiet", sample(1, 0)),
      pod("unready", sample(99, 0), { ready: false }),
      pod("gone", undefined, { stale: true }),
      pod("late", sample(5, 0), { stale: true }),
      pod("also-busy", sample(50, 0)),
    ], []);
    expect(agg.pods.map((p) => p.name)).toEqual(["late", "gone", "unready", "also-busy", "busy", "quiet"]);
  });

  it("lists an unknown pod without counts, marked stale, and a stale pod with its last known counts", () => {
    const agg = aggregate([pod("gone", undefined, { stale: true, node: "n1" }), pod("late", sample(5, 2), { stale: true, node: undefined })], []);
    expect(agg.pods).toContainEqual({ name: "gone", node: "n1", ready: true, stale: true });
    expect(agg.pods).toContainEqual({ name: "late", connections: 5, channels: 2, ready: true, stale: true });
    expect(agg.pods.find((p) => p.name === "gone")).not.toHaveProperty("connections");
  });

  it("a fresh pod carries no stale flag", () => {
    const agg = aggregate([pod("a", sample(1, 1))], []);
    expect(agg.pods).toEqual([{ name: "a", node: "node-a", connections: 1, channels: 1, ready: true }]);
  });

  it("bounds the list to 200 pods and keeps the stale ones however many busy pods there are", () => {
    const pods = Array.from({ length: 300 }, (_, i) => pod(`p${i}`, sample(1000 + i, 0)));
    pods.push(pod("stale", sample(0, 0), { stale: true }));
    const agg = aggregate(pods, []);
    expect(agg.pods).toHaveLength(MAX_STATUS_PODS);
    expect(agg.pods[0]!.name).toBe("stale");
    expect(agg.pods[1]!.name).toBe("p299");
    // The totals still cover every pod.
    expect(agg.connections).toBe(Array.from({ length: 300 }, (_, i) => 1000 + i).reduce((a, b) => a + b, 0));
  });
});

describe("aggregate: nodes", () => {
  it("sums pods, connections and channels per node, busiest first, leaving out pods with no node or no counts", () => {
    const agg = aggregate([
      pod("a", sample(3, 1, {}, 1), { node: "n1" }),
      pod("b", sample(2, 2), { node: "n1" }),
      pod("c", sample(10, 0), { node: "n2" }),
      pod("d", sample(100, 0), { node: undefined }),
      pod("e", undefined, { node: "n3", stale: true }),
    ], []);
    expect(agg.nodes).toEqual([
      { name: "n2", pods: 1, connections: 10, channels: 0 },
      { name: "n1", pods: 2, connections: 6, channels: 3 },
    ]);
  });
});
