import { describe, expect, it } from "vitest";
import { aggregate, type PodObservation, type SidecarSample } from "../../../../operator/aggregate/aggregate.js";
import { occupancyPush, occupancySnapshot } from "../../../../operator/aggregate/occupancy.js";
import type { OccupancyPolicy } from "../../../../operator/api/types.js";
import { MAX_OCCUPANCY_KEYS } from "../../../../sidecar/admin/contract.js";

const AT = new Date("2026-12-02T17:00:00Z");

function obs(name: string, node: string | undefined, s: Partial<SidecarSample> | undefined, stale = false): PodObservation {
  const sample = s === undefined ? undefined : { connections: 0, channels: 0, longpoll: 0, topics: {}, ...s };
  return { name, node, ready: true, sample, stale };
}

function snapshot(policy: OccupancyPolicy, observations: PodObservation[]) {
  return occupancySnapshot(policy, observations, aggregate(observations, []), AT);
}

describe("occupancySnapshot", () => {
  const policy: OccupancyPolicy = { expose: ["room:*", "lobby"], totals: true, intervalSeconds: 5 };

  it("sums the pods' exposed counts cluster-wide and per node, with the totals and the scrape time", () => {
    const s = snapshot(policy, [
      obs("a", "n1", { connections: 3, channels: 4, occupancy: { "room:*": 3, lobby: 1, "room:1": 2, "room:2": 1 } }),
      obs("b", "n1", { connections: 1, longpoll: 1, channels: 1, occupancy: { "room:*": 1, lobby: 0, "room:1": 1 } }),
      obs("c", "n2", { connections: 5, channels: 2, occupancy: { "room:*": 2, lobby: 0, "room:3": 2 } }, true), // stale: its last known counts
      obs("d", "n2", undefined), // never answered
    ]);
    expect(s).toEqual({
      at: "2026-12-02T17:00:00.000Z",
      total: { connections: 10, channels: 7 },
      counts: { "room:*": 6, lobby: 1, "room:1": 3, "room:3": 2, "room:2": 1 },
      nodes: [ // busiest first, then by name
        { name: "n1", connections: 5, channels: 5, counts: { "room:*": 4, lobby: 1 } },
        { name: "n2", connections: 5, channels: 2, counts: { "room:*": 2, lobby: 0 } },
      ],
    });
  });

  it("leaves the totals out unless the policy exposes them, and lists every glob even before any pod reported", () => {
    const s = snapshot({ ...policy, totals: false }, [obs("a", "n1", { connections: 3, channels: 4 })]);
    expect(s).toEqual({ at: AT.toISOString(), counts: { "room:*": 0, lobby: 0 }, nodes: [{ name: "n1", counts: {} }] });
  });

  it("keeps the globs and the busiest topics within the bound", () => {
    const many = Object.fromEntries(Array.from({ length: MAX_OCCUPANCY_KEYS + 50 }, (_, i) => [`room:${i}`, i]));
    const s = snapshot(policy, [obs("a", "n1", { occupancy: { "room:*": 1, lobby: 0, ...many } })]);
    expect(Object.keys(s.counts)).toHaveLength(MAX_OCCUPANCY_KEYS);
    expect(s.counts).toMatchObject({ "room:*": 1, lobby: 0, [`room:${MAX_OCCUPANCY_KEYS + 49}`]: MAX_OCCUPANCY_KEYS + 49 });
    expect(s.counts).not.toHaveProperty("room:0");
  });

  it("pushes the policy with its defaults and the snapshot", () => {
    const s = snapshot(policy, []);
    expect(occupancyPush(policy, s)).toEqual({ expose: ["room:*", "lobby"], totals: true, intervalSeconds: 5, snapshot: s });
  });
});
