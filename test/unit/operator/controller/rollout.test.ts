// The rollout guard on synthetic series: old and new pods side by side, one scrape a minute.
import { describe, expect, it } from "vitest";
import { RolloutGuard, rolloutCondition, type ChurnSample } from "../../../../operator/controller/rollout.js";
import type { RolloutGuardSpec } from "../../../../operator/api/types.js";

const SPEC: RolloutGuardSpec = { maxChurnRatio: 2, minConnectionMinutes: 60, minJoins: 100, action: "none" };
const SINCE = "2026-03-01T00:00:00.000Z";

/** A pod holding `connections` that loses `dropsPerMinute` and answers `joinsPerMinute` joins, `errorsPerMinute` of them errors. */
function pod(name: string, revision: string, connections: number, dropsPerMinute: number, joinsPerMinute = 0, errorsPerMinute = 0) {
  const s: ChurnSample = { pod: name, revision, since: SINCE, connectionSeconds: 0, disconnects: 0, leaves: 0, joins: 0, joinErrors: 0 };
  return {
    s,
    tick() {
      s.connectionSeconds += connections * 60;
      s.disconnects += dropsPerMinute;
      s.joins += joinsPerMinute;
      s.joinErrors += errorsPerMinute;
    },
  };
}

function run(guard: RolloutGuard, pods: ReturnType<typeof pod>[], minutes: number, t: { ms: number }) {
  let v;
  for (let i = 0; i < minutes; i++) {
    for (const p of pods) p.tick();
    t.ms += 60_000;
    v = guard.observe(pods.map((p) => ({ ...p.s })), SPEC, t.ms);
  }
  return v;
}

describe("RolloutGuard", () => {
  it("reports nothing while one revision runs", () => {
    const g = new RolloutGuard();
    const t = { ms: 0 };
    expect(run(g, [pod("a", "v1", 100, 1), pod("b", "v1", 100, 1)], 5, t)).toBeUndefined();
    expect(rolloutCondition(undefined, SPEC, undefined)).toMatchObject({ status: "False", reason: "NoRollout" });
  });

  it("turns True when the new pods drop clients over 2x the old pods' rate, once both have the minimum sample", () => {
    const g = new RolloutGuard();
    const t = { ms: 0 };
    const old = [pod("a", "v1", 100, 1), pod("b", "v1", 100, 1)];
    run(g, old, 3, t);
    const fresh = pod("c", "v2", 50, 5); // 0.1 per connection-minute against 0.01
    const early = run(g, [...old, fresh], 1, t)!; // first sample of c is its baseline
    expect(early.exceeded).toBeUndefined();
    expect(rolloutCondition(early, SPEC, undefined)).toMatchObject({ status: "Unknown", reason: "CollectingSample" });
    const v = run(g, [...old, fresh], 2, t)!;
    expect(v.status).toMatchObject({
      new: { revisions: ["v2"], pods: 1, connectionMinutes: 100, disconnects: 10, churnPerConnectionMinute: "0.1000" },
      old: { revisions: ["v1"], pods: 2, churnPerConnectionMinute: "0.0100" },
    });
    expect(v.exceeded).toBe(true);
    const c = rolloutCondition(v, SPEC, v.why);
    expect(c).toMatchObject({ status: "True", reason: "ChurnAboveOld" });
    expect(c.message).toMatch(/new pods lose 0\.1000 .* over 2 × the old pods' 0\.0100/);
  });

  it("a normal rollout (the same churn and join errors) stays within the ratio", () => {
    const g = new RolloutGuard();
    const t = { ms: 0 };
    const old = [pod("a", "v1", 100, 1, 100, 1)];
    run(g, old, 2, t);
    const v = run(g, [...old, pod("b", "v2", 100, 1, 100, 1)], 5, t)!;
    expect(v.exceeded).toBe(false);
    expect(rolloutCondition(v, SPEC, undefined)).toMatchObject({ status: "False", reason: "ChurnWithinRatio" });
  });

  it("judges join errors per join too, and a new pod's restart is not churn", () => {
    const g = new RolloutGuard();
    const t = { ms: 0 };
    const old = [pod("a", "v1", 100, 0, 100, 0)];
    run(g, old, 2, t);
    const bad = pod("b", "v2", 100, 0, 100, 20);
    run(g, [...old, bad], 1, t);
    Object.assign(bad.s, { since: "2026-03-01T01:00:00.000Z", connectionSeconds: 0, disconnects: 0, joins: 0, joinErrors: 0 });
    const v = run(g, [...old, bad], 2, t)!;
    expect(v.status.new).toMatchObject({ joins: 200, joinErrors: 40, disconnects: 0 }); // the first sample is a baseline; after the restart all of it counts
    expect(v.exceeded).toBe(true);
    expect(v.why).toMatch(/refuse 0\.2000 of joins/);
  });

  it("says nothing about which is new when both revisions ran before the operator started", () => {
    const g = new RolloutGuard();
    expect(run(g, [pod("a", "v1", 100, 1), pod("b", "v2", 100, 50)], 5, { ms: 0 })).toBeUndefined();
  });
});
