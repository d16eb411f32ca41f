import { describe, expect, it } from "vitest";
import type { ScalingSpec } from "../../../../operator/api/types.js";
import { decideScale, type Recommendation, type ScaleInput } from "../../../../operator/scale/decide.js";

const NOW = 1_000_000_000;
const spec = (over: Partial<ScalingSpec> = {}): ScalingSpec => ({
  minReplicas: 1, maxReplicas: 20, targetConnectionsPerPod: 100,
  scaleUpStabilizationSeconds: 0, scaleDownStabilizationSeconds: 0, connectionAwareScaleDown: true, ...over,
});
const input = (over: Partial<ScaleInput> = {}): ScaleInput =>
  ({ nowMs: NOW, current: 10, connections: 1000, incomplete: false, spec: spec(), history: [], ...over });
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

describe("decideScale: incomplete counts", () => {
  it("never scales down while some pod's counts are unknown (the total is a lower bound)", () => {
    const d = decideScale(input({ current: 10, connections: 100, incomplete: true }));
    expect(d.desired).toBe(10);
  });

  it("still scales up on a lower bound", () => {
    const d = decideScale(input({ current: 2, connections: 1000, incomplete: true }));
    expect(d.desired).toBe(10);
  });

  it("does not record the scale-down it refused, so it cannot hold later decisions down", () => {
    const d = decideScale(input({ current: 10, connections: 100, incomplete: true }));
    expect(d.history.at(-1)).toEqual({ atMs: NOW, replicas: 10 });
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
