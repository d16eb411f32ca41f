import { describe, expect, it } from "vitest";
import { UsageMeter, utcDay } from "../../../../operator/controller/usage.js";
import type { SidecarUsage } from "../../../../operator/aggregate/aggregate.js";

const T0 = Date.parse("2026-03-10T08:00:00Z");
const SINCE_OLD = "2026-03-10T07:00:00.000Z"; // sidecars already running when the operator starts
const u = (since: string, connectionSeconds: number, channelSeconds: Record<string, number> = {}): SidecarUsage => ({ since, connectionSeconds, channelSeconds });
const at = (s: number) => T0 + s * 1000;

describe("UsageMeter (status.usage)", () => {
  it("counts only what follows its start for sidecars already running, then every increase", () => {
    const m = new UsageMeter(undefined, T0);
    expect(m.observe([{ pod: "a", usage: u(SINCE_OLD, 5000, { "room:*": 100 }) }], 10, ["room:*"], at(0))).toMatchObject({ connectionSeconds: 0, peakConnections: 10 });
    const s = m.observe([{ pod: "a", usage: u(SINCE_OLD, 5050, { "room:*": 130, _other: 7 }) }], 12, ["room:*"], at(5));
    expect(s).toEqual({
      period: "2026-03-10", connectionSeconds: 50, peakConnections: 12, peakTime: new Date(at(5)).toISOString(),
      groups: [{ name: "room:*", channelSeconds: 30 }, { name: "_other", channelSeconds: 7 }],
    });
  });

  it("sums increases across a sidecar restart (counter reset), never the raw counters", () => {
    const m = new UsageMeter(undefined, T0);
    m.observe([{ pod: "a", usage: u(SINCE_OLD, 1000) }], 1, [], at(0));
    m.observe([{ pod: "a", usage: u(SINCE_OLD, 1040) }], 1, [], at(5));
    // restarted: a new `since`, its counter from 0 (even when the new value exceeds the old one)
    const restarted = new Date(at(6)).toISOString();
    expect(m.observe([{ pod: "a", usage: u(restarted, 1500) }], 1, [], at(10)).connectionSeconds).toBe(40 + 1500);
    // a counter that went down with the same `since` is a restart too
    expect(m.observe([{ pod: "a", usage: u(restarted, 20) }], 1, [], at(15)).connectionSeconds).toBe(40 + 1500 + 20);
  });

  it("counts all of a pod that started after the meter, and nothing twice after the pod is gone and back", () => {
    const m = new UsageMeter(undefined, T0);
    const born = new Date(at(2)).toISOString();
    expect(m.observe([{ pod: "new", usage: u(born, 8) }], 1, [], at(5)).connectionSeconds).toBe(8);
    m.retain(new Set());
    expect(m.observe([], 0, [], at(10)).connectionSeconds).toBe(8);
  });

  it("goes on from the status an earlier operator wrote today, and starts over on a new UTC day", () => {
    const written = { period: "2026-03-10", connectionSeconds: 7200, peakConnections: 40, peakTime: "2026-03-10T03:00:00.000Z", groups: [{ name: "room:*", channelSeconds: 900 }] };
    const m = new UsageMeter(written, T0);
    m.observe([{ pod: "a", usage: u(SINCE_OLD, 100, { "room:*": 10 }) }], 5, ["room:*"], at(0));
    const s = m.observe([{ pod: "a", usage: u(SINCE_OLD, 160, { "room:*": 40 }) }], 5, ["room:*"], at(5));
    expect(s).toMatchObject({ connectionSeconds: 7260, peakConnections: 40, peakTime: written.peakTime, groups: [{ name: "room:*", channelSeconds: 930 }] });
    // yesterday's status is not today's
    expect(new UsageMeter({ ...written, period: "2026-03-09" }, T0).observe([], 3, [], at(0))).toMatchObject({ connectionSeconds: 0, peakConnections: 3 });
    // midnight UTC: the counts restart
    const midnight = Date.parse("2026-03-11T00:00:02Z");
    const next = m.observe([{ pod: "a", usage: u(SINCE_OLD, 200, { "room:*": 50 }) }], 2, ["room:*"], midnight);
    expect(next).toMatchObject({ period: "2026-03-11", connectionSeconds: 40, peakConnections: 2, groups: [{ name: "room:*", channelSeconds: 10 }] });
    expect(utcDay(midnight)).toBe("2026-03-11");
  });

  it("keeps status bounded: group names outside spec.topics count under _other", () => {
    const m = new UsageMeter(undefined, T0);
    const born = new Date(at(1)).toISOString();
    const s = m.observe([{ pod: "a", usage: u(born, 1, { "room:*": 3, "x:*": 4, _other: 5 }) }], 1, ["room:*"], at(5));
    expect(s.groups).toEqual([{ name: "room:*", channelSeconds: 3 }, { name: "_other", channelSeconds: 9 }]);
  });
});
