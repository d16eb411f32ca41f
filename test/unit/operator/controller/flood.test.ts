// The spike detector on synthetic series and a fake clock: one scrape every 5 s.
import { describe, expect, it } from "vitest";
import { FloodDetector, MIN_BASELINE_MS, type FloodObservation } from "../../../../operator/controller/flood.js";
import type { FloodProtectionSpec } from "../../../../operator/api/types.js";
import { floodCondition, throttleBuckets } from "../../../../operator/controller/protection.js";
import { withDefaults } from "../../../../operator/api/types.js";

const STEP_MS = 5000;
const SPEC: FloodProtectionSpec = { spikeFactor: 10, minRatePerSecond: 20, cooldownSeconds: 60, action: "throttle" };

/** A cluster of `pods` sidecars whose counters the test drives at given rates per second (cluster-wide). */
function cluster(pods = 4, spec = SPEC) {
  const d = new FloodDetector();
  let t = Date.parse("2026-03-01T00:00:00Z");
  const counters = Array.from({ length: pods }, (_, i) => ({ pod: `p${i}`, since: "2026-02-28T00:00:00.000Z", upgrades: 0, joins: 0 }));
  let last: FloodObservation | undefined;
  const transitions: string[] = [];
  /** Runs `seconds` of scrapes at these cluster-wide rates. */
  const run = (seconds: number, upgradesPerSecond: number, joinsPerSecond: number) => {
    for (let s = 0; s < seconds; s += STEP_MS / 1000) {
      t += STEP_MS;
      for (const c of counters) {
        c.upgrades += (upgradesPerSecond * STEP_MS) / 1000 / pods;
        c.joins += (joinsPerSecond * STEP_MS) / 1000 / pods;
      }
      last = d.observe(counters.map((c) => ({ ...c })), pods, spec, t);
      if (last.transition) transitions.push(`${last.transition}@${s + STEP_MS / 1000}`);
    }
    return last!;
  };
  return { run, counters, transitions, restart: (i: number) => Object.assign(counters[i]!, { since: new Date(t).toISOString(), upgrades: 0, joins: 0 }) };
}

describe("FloodDetector", () => {
  it("judges nothing until it has 5 minutes of baseline: a new operator does not throttle on a guess", () => {
    const c = cluster();
    expect(c.run(60, 1000, 1000).state).toMatchObject({ phase: "collecting" });
    const s = c.run(MIN_BASELINE_MS / 1000 - 60, 1, 1).state;
    expect(s.phase).toBe("collecting");
    expect(floodCondition(s, SPEC)).toMatchObject({ status: "Unknown", reason: "CollectingBaseline" });
    expect(c.run(65, 1, 1).state.phase).toBe("normal");
  });

  it("never trips a quiet cluster: 10x a tiny baseline stays under the floor", () => {
    const c = cluster();
    c.run(600, 0.5, 0.2);
    const r = c.run(120, 5, 2).state;
    expect(r).toMatchObject({ phase: "normal", reading: { joins: { thresholdPerSecond: 20 } } });
    expect(c.transitions).toEqual([]);
  });

  it("detects a join spike over factor x the previous hour, throttles every pod to its share of the threshold, and clears after the cooldown", () => {
    const c = cluster(4);
    c.run(900, 10, 30); // baseline: 10 upgrades/s, 30 joins/s; thresholds 100/s and 300/s
    const flood = c.run(30, 10, 3000).state;
    expect(flood).toMatchObject({ phase: "flood", signals: ["joins"], throttle: { upgradeRatePerSecond: 25, joinRatePerSecond: 75 } });
    if (flood.phase !== "flood") throw new Error("no flood");
    expect(flood.reading.joins.baselinePerSecond).toBeCloseTo(30, 5);
    expect(flood.reading.joins.thresholdPerSecond).toBeCloseTo(300, 5);
    const cond = floodCondition(flood, SPEC);
    expect(cond).toMatchObject({ status: "True", reason: "JoinSpike" });
    expect(cond.message).toMatch(/joins .* threshold 300\/s .*Throttling every pod to 25 upgrades\/s and 75 joins\/s/);
    expect(throttleBuckets(withDefaults({ targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "x" }, limits: { joinRatePerPod: 50 } }), flood.throttle!))
      .toEqual({ upgradeRatePerSecond: 25, upgradeBurst: 25, podJoinRatePerSecond: 50, podJoinBurst: 50 });
    // ten minutes of flood: the thresholds stay frozen (the flood does not raise its own bar)
    expect(c.run(600, 10, 3000).state).toMatchObject({ phase: "flood", reading: { joins: { thresholdPerSecond: expect.closeTo(300, 5) } } });
    // the flood stops: the last minute's rate must fall, then stay under for the 60 s cooldown
    expect(c.run(60, 10, 30).state.phase).toBe("flood");
    const after = c.run(65, 10, 30).state;
    expect(after.phase).toBe("normal");
    // the baseline after it leaves the flood's minutes out
    if (after.phase === "normal") expect(after.reading.joins.baselinePerSecond).toBeCloseTo(30, 0);
    expect(c.transitions.map((x) => x.split("@")[0])).toEqual(["started", "cleared"]);
  });

  it("a flood that keeps coming back within the cooldown stays one flood", () => {
    const c = cluster();
    c.run(600, 10, 10);
    c.run(60, 500, 10);
    c.run(50, 10, 10);
    c.run(60, 500, 10);
    expect(c.transitions.map((x) => x.split("@")[0])).toEqual(["started"]);
  });

  it("does not read a sidecar restart (counters back to 0) or a new pod as a spike", () => {
    const c = cluster();
    c.run(600, 50, 50);
    c.restart(0);
    c.run(60, 50, 50);
    expect(c.transitions).toEqual([]);
    expect(c.run(5, 50, 50).state.phase).toBe("normal");
  });
});
