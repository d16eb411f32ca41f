import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { withDefaults, type PolicySpec } from "../../../../operator/api/types.js";
import { budgetTtlSeconds, failoverGapSeconds, planBudgets, refreshAfterMs, refreshDueMs, withoutRaises, type BudgetPod } from "../../../../operator/controller/budget-plan.js";
import type { SidecarConfig } from "../../../../operator/scrape/sidecar-client.js";

const spec = (maxConnections: number): PolicySpec =>
  withDefaults({ targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, limits: { maxConnections } });

const config = (connectionBudget: number): SidecarConfig => ({ connectionBudget, ttlSeconds: 25 });

describe("budgetTtlSeconds", () => {
  it.each([
    { intervalS: 5, gap: 70 },
    { intervalS: 2, gap: 64 },
    { intervalS: 60, gap: 180 },
  ])("a failover while the API server is away 30 s takes 2 leases + 30 s + 2 intervals, at least 3 intervals ($intervalS s → $gap s); the TTL is twice that", ({ intervalS, gap }) => {
    expect(failoverGapSeconds(intervalS * 1000)).toBe(gap);
    expect(budgetTtlSeconds(intervalS * 1000)).toBe(2 * gap);
  });

  it.each([2, 5, 60])("a config refreshed when due leaves a whole failover gap of its TTL, even noticed an interval late (%d s)", (intervalS) => {
    const ms = intervalS * 1000;
    const oldestAge = refreshAfterMs(ms) + ms;
    expect(budgetTtlSeconds(ms) * 1000 - oldestAge).toBeGreaterThanOrEqual(failoverGapSeconds(ms) * 1000);
    // And it spares pushes: at least 2 intervals between refreshes (13 at the default 5 s).
    expect(refreshAfterMs(ms)).toBeGreaterThanOrEqual(2 * ms);
  });

  it("spreads the pods' refreshes between half and all of refreshAfterMs, the same for a name every time", () => {
    const dues = Array.from({ length: 1000 }, (_, i) => refreshDueMs(`chat-7d9f8c-${i}`, 5000));
    expect(Math.min(...dues)).toBeGreaterThanOrEqual(refreshAfterMs(5000) / 2);
    expect(Math.max(...dues)).toBeLessThanOrEqual(refreshAfterMs(5000));
    // Over the 7 intervals from half to all of 65 s, no interval gets more than a quarter of the pods.
    const perInterval = new Map<number, number>();
    for (const d of dues) perInterval.set(Math.floor(d / 5000), (perInterval.get(Math.floor(d / 5000)) ?? 0) + 1);
    expect(Math.max(...perInterval.values())).toBeLessThan(250);
    expect(refreshDueMs("chat-7d9f8c-1", 5000)).toBe(dues[1]);
  });
});

describe("planBudgets", () => {
  it("a pod that never got a budget is raised last; pods losing headroom to it are lowered first", () => {
    const pods: BudgetPod[] = [
      { name: "a", fresh: true, terminating: false, pushFailed: false, connections: 10, groupChannels: undefined, inForce: config(30), everPushed: true },
      { name: "b", fresh: true, terminating: false, pushFailed: false, connections: 10, groupChannels: undefined, inForce: config(30), everPushed: true },
      { name: "new", fresh: true, terminating: false, pushFailed: false, connections: 0, groupChannels: undefined, inForce: undefined, everPushed: false },
    ];
    const plan = planBudgets(spec(60), pods, 25);
    // 40 of headroom over 3 pods: 14, 13, 13 (the remainder to the first by name).
    expect(plan.map((p) => [p.name, p.phase, p.config.connectionBudget])).toEqual([["a", 1, 24], ["b", 1, 23], ["new", 2, 13]]);
    expect(plan.reduce((s, p) => s + (p.config.connectionBudget ?? 0), 0)).toBeLessThanOrEqual(60);
  });

  it("keeps a budget that still leaves a pod most of its fresh headroom, and replaces one that does not", () => {
    // Fresh split of 100 over 20 + 22 used: 58 headroom, 29 each → 49 and 51.
    const pods: BudgetPod[] = [
      { name: "a", fresh: true, terminating: false, pushFailed: false, connections: 20, groupChannels: undefined, inForce: config(45), everPushed: true },
      { name: "b", fresh: true, terminating: false, pushFailed: false, connections: 22, groupChannels: undefined, inForce: config(30), everPushed: true },
    ];
    const plan = planBudgets(spec(100), pods, 25);
    // a: 45 ≥ 49 − 29/4 = 42: kept. b: 30 < 51 − 29/4: replaced by its fresh share.
    expect(plan.map((p) => [p.name, p.config.connectionBudget])).toEqual([["a", 45], ["b", 51]]);
  });

  it("gives back kept budgets above their fresh share when the sum would pass the cap", () => {
    const pods: BudgetPod[] = [
      { name: "a", fresh: true, terminating: false, pushFailed: false, connections: 10, groupChannels: undefined, inForce: config(52), everPushed: true },
      { name: "b", fresh: true, terminating: false, pushFailed: false, connections: 10, groupChannels: undefined, inForce: config(50), everPushed: true },
    ];
    // Fresh: 50 and 50. Keeping a's 52 would sum to 102.
    expect(planBudgets(spec(100), pods, 25).map((p) => p.config.connectionBudget)).toEqual([50, 50]);
  });

  it("a pod whose budget lapsed (back on its unlimited flags) is lowered first", () => {
    const pods: BudgetPod[] = [
      { name: "a", fresh: true, terminating: false, pushFailed: false, connections: 5, groupChannels: undefined, inForce: undefined, everPushed: true },
    ];
    expect(planBudgets(spec(60), pods, 25)[0]!.phase).toBe(1);
  });

  // The invariant the soak samples: whatever pods answer, refuse or fail mid-way, and in whatever
  // order pushes land, the budgets in force never sum past the cap.
  it("keeps the sum of the budgets in force within the cap after every single push (property)", () => {
    const podArb = fc.record({
      fresh: fc.boolean(),
      terminating: fc.boolean(),
      pushFailed: fc.boolean(),
      connections: fc.nat(50),
      /** The budget it enforces now: a number, or none yet (a new pod awaiting its first budget). */
      inForce: fc.option(fc.nat(50), { nil: undefined }),
      failsNow: fc.boolean(),
    });
    fc.assert(fc.property(fc.integer({ min: 0, max: 200 }), fc.array(podArb, { minLength: 1, maxLength: 8 }), fc.integer(), (cap, raw, seed) => {
      const pods: BudgetPod[] = raw.map((r, i) => ({
        name: `p${i}`, fresh: r.fresh, terminating: r.terminating, pushFailed: r.pushFailed,
        // A pod holds at most its budget (pods with none yet await it, and hold nothing).
        connections: r.inForce === undefined ? 0 : Math.min(r.connections, r.inForce),
        groupChannels: undefined, inForce: r.inForce === undefined ? undefined : config(r.inForce), everPushed: r.inForce !== undefined,
      }));
      const enforced = new Map(pods.map((p) => [p.name, p.inForce?.connectionBudget ?? 0]));
      const total = () => [...enforced.values()].reduce((a, b) => a + b, 0);
      fc.pre(total() <= cap);
      const plan = planBudgets(spec(cap), pods, 25);
      const fails = new Map(raw.map((r, i) => [`p${i}`, r.failsNow]));
      const order = (xs: typeof plan) => [...xs].sort((a, b) => ((a.name.charCodeAt(1) * 31 + seed) % 7) - ((b.name.charCodeAt(1) * 31 + seed) % 7));
      let raiseAllowed = true;
      for (const p of order(plan.filter((x) => x.phase === 1))) {
        if (fails.get(p.name)) {
          if (!p.probe) raiseAllowed = false;
          continue;
        }
        enforced.set(p.name, p.config.connectionBudget!);
        expect(total()).toBeLessThanOrEqual(cap);
      }
      for (const p of order(plan.filter((x) => x.phase === 2))) {
        const pod = pods.find((x) => x.name === p.name)!;
        const c = raiseAllowed ? p.config : withoutRaises(p, pod.inForce);
        if (!c || fails.get(p.name)) continue;
        enforced.set(p.name, c.connectionBudget!);
        expect(total()).toBeLessThanOrEqual(cap);
      }
    }), { numRuns: 2000 });
  });
});
