import { describe, expect, it } from "vitest";
import { DEFAULT_SCALE_DOWN_POLICIES, DEFAULT_SCALE_UP_POLICIES, type ScalingRatePolicy, type ScalingSpec } from "../../../../operator/api/types.js";
import { decideScale, type Recommendation, type ScaleEvent, type ScaleInput } from "../../../../operator/scale/decide.js";

const NOW = 1_000_000_000;
/** A rate policy that never binds here (the rate-policy tests below set their own). */
const UNLIMITED: ScalingRatePolicy[] = [{ type: "Pods", value: 1000, periodSeconds: 1 }];
const spec = (over: Partial<ScalingSpec> = {}): ScalingSpec => ({
  minReplicas: 1, maxReplicas: 20, targetConnectionsPerPod: 100,
  scaleUpStabilizationSeconds: 0, scaleDownStabilizationSeconds: 0,
  scaleUpPolicies: UNLIMITED, scaleUpSelectPolicy: "Max", scaleDownPolicies: UNLIMITED, scaleDownSelectPolicy: "Max",
  connectionAwareScaleDown: true, ...over,
});
const input = (over: Partial<ScaleInput> = {}): ScaleInput =>
  ({ nowMs: NOW, current: 10, connections: 1000, metricPods: 10, missingPods: 0, spec: spec(), history: [], events: [], ...over });
const ago = (seconds: number, replicas: number): Recommendation => ({ atMs: NOW - seconds * 1000, replicas });

describe("decideScale: the ratio", () => {
  it.each([
    { what: "asks for ceil(connections / target)", current: 1, connections: 201, desired: 3 },
    { what: "scales up from a whole multiple", current: 2, connections: 1000, desired: 10 },
    { what: "scales down to ceil(connections / target)", current: 10, connections: 301, desired: 4 },
    { what: "keeps the replicas within +10 %", current: 10, connections: 1090, desired: 10 },
    { what: "keeps the replicas within -10 %", current: 10, connections: 910, desired: 10 },
    { what: "keeps the replicas at exactly +10 % (the HPA's tolerance is inclusive)", current: 10, connections: 1100, desired: 10 },
    { what: "keeps the replicas at exactly -10 %", current: 10, connections: 900, desired: 10 },
    { what: "scales up just past +10 %", current: 10, connections: 1101, desired: 12 },
    { what: "scales down just past -10 %", current: 10, connections: 899, desired: 9 },
    { what: "scales from 0 replicas whatever the ratio", current: 0, connections: 50, desired: 1 },
    { what: "no connections: down to minReplicas", current: 5, connections: 0, desired: 1 },
  ])("$what ($connections connections on $current pods → $desired)", ({ current, connections, desired }) => {
    const d = decideScale(input({ current, connections }));
    expect(d.desired).toBe(desired);
    expect(d.recommendation).toBe(desired);
  });
});

describe("decideScale: clamping", () => {
  it.each([
    { what: "caps at maxReplicas and says TooManyReplicas", connections: 5000, min: 1, max: 20, desired: 20, limited: "TooManyReplicas" },
    { what: "floors at minReplicas and says TooFewReplicas", connections: 10, min: 3, max: 20, desired: 3, limited: "TooFewReplicas" },
    { what: "says nothing within range", connections: 500, min: 3, max: 20, desired: 5, limited: undefined },
    { what: "exactly maxReplicas is not limited", connections: 2000, min: 1, max: 20, desired: 20, limited: undefined },
    { what: "exactly minReplicas is not limited", connections: 300, min: 3, max: 20, desired: 3, limited: undefined },
  ])("$what", ({ connections, min, max, desired, limited }) => {
    const d = decideScale(input({ connections, spec: spec({ minReplicas: min, maxReplicas: max }) }));
    expect(d.desired).toBe(desired);
    expect(d.limited).toBe(limited);
  });

  it("brings a target above maxReplicas down even when its ratio is within tolerance", () => {
    const d = decideScale(input({ current: 30, connections: 3000, spec: spec({ maxReplicas: 20 }) }));
    expect(d).toMatchObject({ desired: 20, limited: "TooManyReplicas" });
  });
});

describe("decideScale: pods with no counts (the HPA's missing pods)", () => {
  it("scales down with a silent pod counted as at the target: 3 idle pods, one silent, min 2 → 2", () => {
    const d = decideScale(input({ current: 3, connections: 0, metricPods: 2, missingPods: 1, spec: spec({ minReplicas: 2 }) }));
    expect(d.desired).toBe(2);
  });

  it("counts the silent pods as at the target on a scale-down, so they cannot hide load", () => {
    // 9 pods with 100 connections in all, one silent: taken as 100 + 100 = 200 → 2 pods, not 1.
    const d = decideScale(input({ current: 10, connections: 100, metricPods: 9, missingPods: 1 }));
    expect(d.desired).toBe(2);
  });

  it("counts the silent pods as empty on a scale-up, so they cannot invent load", () => {
    const d = decideScale(input({ current: 2, connections: 1000, metricPods: 1, missingPods: 1 }));
    expect(d.desired).toBe(10);
  });

  it("keeps the replicas when counting the silent pods turns a scale-down into a scale-up", () => {
    // 2 known pods at 80 % of the target; 2 silent pods at 100 % make the ratio 0.9: within tolerance.
    const d = decideScale(input({ current: 4, connections: 160, metricPods: 2, missingPods: 2 }));
    expect(d.desired).toBe(4);
  });

  it("keeps the replicas when no pod has counts", () => {
    const d = decideScale(input({ current: 4, connections: 0, metricPods: 0, missingPods: 4 }));
    expect(d.desired).toBe(4);
  });

  it("does not record a scale-down it refused, so it cannot hold later decisions down", () => {
    const d = decideScale(input({ current: 4, connections: 160, metricPods: 2, missingPods: 2 }));
    expect(d.history.at(-1)).toEqual({ atMs: NOW, replicas: 4 });
  });
});

describe("decideScale: stabilization windows", () => {
  it("scale-up window: takes the lowest recommendation within it", () => {
    const d = decideScale(input({
      current: 4, connections: 1000, spec: spec({ scaleUpStabilizationSeconds: 60 }), history: [ago(50, 6), ago(20, 8)],
    }));
    expect(d.recommendation).toBe(10);
    expect(d.desired).toBe(6);
  });

  it("scale-up window: never goes below the current count", () => {
    const d = decideScale(input({ current: 7, connections: 1000, spec: spec({ scaleUpStabilizationSeconds: 60 }), history: [ago(30, 3)] }));
    expect(d.desired).toBe(7);
  });

  it("scale-up window: a recommendation older than the window no longer counts", () => {
    const d = decideScale(input({ current: 4, connections: 1000, spec: spec({ scaleUpStabilizationSeconds: 60 }), history: [ago(61, 5)] }));
    expect(d.desired).toBe(10);
  });

  it("scale-up window of 0 s: scales up at once", () => {
    const d = decideScale(input({ current: 4, connections: 1000, history: [ago(1, 4)] }));
    expect(d.desired).toBe(10);
  });

  it("scale-down window: takes the highest recommendation within it and says it held back", () => {
    const d = decideScale(input({
      current: 10, connections: 300, spec: spec({ scaleDownStabilizationSeconds: 300 }), history: [ago(290, 10), ago(100, 7)],
    }));
    expect(d.recommendation).toBe(3);
    expect(d.desired).toBe(10);
    expect(d.heldBack).toBe(true);
  });

  it("scale-down window: steps down to the highest recommendation still inside it", () => {
    const d = decideScale(input({
      current: 10, connections: 300, spec: spec({ scaleDownStabilizationSeconds: 300 }), history: [ago(301, 10), ago(100, 7)],
    }));
    expect(d.desired).toBe(7);
    expect(d.heldBack).toBe(true);
  });

  it("scale-down window: scales down once every higher recommendation has left it", () => {
    const d = decideScale(input({
      current: 10, connections: 300, spec: spec({ scaleDownStabilizationSeconds: 300 }), history: [ago(300, 10), ago(400, 9)],
    }));
    expect(d.desired).toBe(3);
    expect(d.heldBack).toBe(false);
  });

  it("scale-down window: does not hold back a scale-up", () => {
    const d = decideScale(input({ current: 2, connections: 1000, spec: spec({ scaleDownStabilizationSeconds: 300 }), history: [ago(10, 2)] }));
    expect(d.desired).toBe(10);
    expect(d.heldBack).toBe(false);
  });

  it("both windows: up to the lowest recent recommendation, capped by the highest", () => {
    const d = decideScale(input({
      current: 4, connections: 1000,
      spec: spec({ scaleUpStabilizationSeconds: 60, scaleDownStabilizationSeconds: 300 }),
      history: [ago(200, 12), ago(30, 7)],
    }));
    expect(d.desired).toBe(7);
  });
});

describe("decideScale: history", () => {
  it("appends this interval's clamped recommendation", () => {
    const d = decideScale(input({ connections: 5000, spec: spec({ maxReplicas: 20, scaleDownStabilizationSeconds: 60 }) }));
    expect(d.history).toEqual([{ atMs: NOW, replicas: 20 }]);
  });

  it("prunes entries older than the longest window (and any from the future), keeping the rest in order", () => {
    const d = decideScale(input({
      spec: spec({ scaleUpStabilizationSeconds: 30, scaleDownStabilizationSeconds: 120 }),
      history: [ago(500, 1), ago(120, 2), ago(119, 3), ago(10, 4), { atMs: NOW + 5000, replicas: 99 }],
    }));
    expect(d.history).toEqual([ago(119, 3), ago(10, 4), { atMs: NOW, replicas: 10 }]);
  });

  it("does not change the history it was given", () => {
    const history = [ago(10, 4)];
    decideScale(input({ spec: spec({ scaleDownStabilizationSeconds: 60 }), history }));
    expect(history).toEqual([ago(10, 4)]);
  });

  it("keeps nothing but the new entry when both windows are 0 s", () => {
    const d = decideScale(input({ history: [ago(1, 4), ago(0.001, 5)] }));
    expect(d.history).toEqual([{ atMs: NOW, replicas: 10 }]);
  });
});

describe("decideScale: rate policies (the HPA's behavior.policies)", () => {
  const hpaDefaults = (over: Partial<ScalingSpec> = {}) =>
    spec({ maxReplicas: 100, scaleUpPolicies: [...DEFAULT_SCALE_UP_POLICIES], scaleDownPolicies: [...DEFAULT_SCALE_DOWN_POLICIES], ...over });
  const event = (secondsAgo: number, change: number): ScaleEvent => ({ atMs: NOW - secondsAgo * 1000, change });

  it("by default scales up by 4 pods or 100 % per 15 s, whichever is more", () => {
    expect(decideScale(input({ current: 1, connections: 5000, spec: hpaDefaults() }))).toMatchObject({ desired: 5, recommendation: 50, limited: "ScaleUpLimit" });
    expect(decideScale(input({ current: 10, connections: 5000, spec: hpaDefaults() }))).toMatchObject({ desired: 20, limited: "ScaleUpLimit" });
  });

  it("counts the scale-ups already made within the period, and only those", () => {
    // 1 -> 5 ten seconds ago: the period started at 1, so 5 is all it allows.
    expect(decideScale(input({ current: 5, connections: 5000, spec: hpaDefaults(), events: [event(10, 4)] }))).toMatchObject({ desired: 5, limited: "ScaleUpLimit" });
    // Once that scale is older than 15 s, the next period starts at 5.
    expect(decideScale(input({ current: 5, connections: 5000, spec: hpaDefaults(), events: [event(16, 4)] }))).toMatchObject({ desired: 10 });
  });

  it("Min takes the least permissive policy; Disabled never scales that way", () => {
    expect(decideScale(input({ current: 10, connections: 5000, spec: hpaDefaults({ scaleUpSelectPolicy: "Min" }) })).desired).toBe(14);
    expect(decideScale(input({ current: 5, connections: 5000, spec: hpaDefaults({ scaleUpSelectPolicy: "Disabled" }) }))).toMatchObject({ desired: 5, limited: "ScaleUpLimit" });
    // Scaling up Disabled does not stop a scale-down.
    expect(decideScale(input({ current: 5, connections: 100, spec: hpaDefaults({ scaleUpSelectPolicy: "Disabled" }) })).desired).toBe(1);
    expect(decideScale(input({ current: 5, connections: 100, spec: hpaDefaults({ scaleDownSelectPolicy: "Disabled" }) }))).toMatchObject({ desired: 5, limited: "ScaleDownLimit" });
  });

  it("limits scale-downs the same way, counting the removals within the period", () => {
    const half = hpaDefaults({ scaleDownPolicies: [{ type: "Percent", value: 50, periodSeconds: 60 }] });
    expect(decideScale(input({ current: 10, connections: 100, spec: half }))).toMatchObject({ desired: 5, recommendation: 1, limited: "ScaleDownLimit" });
    expect(decideScale(input({ current: 5, connections: 100, spec: half, events: [event(30, -5)] })).desired).toBe(5);
    expect(decideScale(input({ current: 5, connections: 100, spec: half, events: [event(61, -5)] })).desired).toBe(2);
    const onePod = hpaDefaults({ scaleDownPolicies: [{ type: "Pods", value: 1, periodSeconds: 60 }] });
    expect(decideScale(input({ current: 10, connections: 100, spec: onePod })).desired).toBe(9);
  });

  it("starts each policy from the count at the start of its period: ups and downs within it both count", () => {
    // 6 -> 10 (+4) then 10 -> 8 (-2) within the period: it started at 6, and Pods 4 allows 10.
    const pods4 = hpaDefaults({ scaleUpPolicies: [{ type: "Pods", value: 4, periodSeconds: 60 }] });
    expect(decideScale(input({ current: 8, connections: 5000, spec: pods4, events: [event(40, 4), event(20, -2)] })).desired).toBe(10);
  });

  it("computes percentages exactly: 10 plus 10 % is 11, 10 minus 15 % is 8", () => {
    expect(decideScale(input({ current: 10, connections: 5000, spec: hpaDefaults({ scaleUpPolicies: [{ type: "Percent", value: 10, periodSeconds: 15 }] }) })).desired).toBe(11);
    expect(decideScale(input({ current: 10, connections: 100, spec: hpaDefaults({ scaleDownPolicies: [{ type: "Percent", value: 15, periodSeconds: 15 }] }) })).desired).toBe(8);
  });

  it("reports a replica bound when the rate does not bind, and nothing when neither does", () => {
    expect(decideScale(input({ current: 15, connections: 5000, spec: hpaDefaults({ maxReplicas: 20 }) }))).toMatchObject({ desired: 20, limited: "TooManyReplicas" });
    expect(decideScale(input({ current: 10, connections: 1500, spec: hpaDefaults() }))).toMatchObject({ desired: 15, limited: undefined });
  });

  it("applies after the stabilization windows: a scale-down held by the window is not rate limited", () => {
    const d = decideScale(input({
      current: 10, connections: 100, history: [ago(100, 10)],
      spec: hpaDefaults({ scaleDownStabilizationSeconds: 300, scaleDownPolicies: [{ type: "Pods", value: 1, periodSeconds: 60 }] }),
    }));
    expect(d).toMatchObject({ desired: 10, heldBack: true, limited: undefined });
  });

  it("keeps the events within the longest period only, and does not change the ones it was given", () => {
    const events = [event(1000, 3), event(100, 2), event(10, 1)];
    const d = decideScale(input({ spec: hpaDefaults({ scaleDownPolicies: [{ type: "Pods", value: 1, periodSeconds: 120 }] }), events }));
    expect(d.events).toEqual([event(100, 2), event(10, 1)]);
    expect(events).toHaveLength(3);
  });
});
