import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { splitCap, type BudgetClaim } from "../../../../operator/aggregate/budgets.js";

const live = (name: string, used: number): BudgetClaim => ({ name, used });
const stale = (name: string, used: number, reserved: number): BudgetClaim => ({ name, used, reserved });
const asObject = (m: Map<string, number>) => Object.fromEntries(m);

describe("splitCap: examples", () => {
  it.each([
    { what: "splits an empty cluster evenly", cap: 9, claims: [live("a", 0), live("b", 0), live("c", 0)], perPod: Infinity, want: { a: 3, b: 3, c: 3 } },
    { what: "gives each pod what it holds plus an even share of the headroom", cap: 100, claims: [live("a", 40), live("b", 10)], perPod: Infinity, want: { a: 65, b: 35 } },
    { what: "hands the remainder of an uneven split out one each, in name order", cap: 11, claims: [live("b", 0), live("a", 0), live("c", 0)], perPod: Infinity, want: { a: 4, b: 4, c: 3 } },
    { what: "never gives a pod more than perPodCap; the rest goes to the others", cap: 100, claims: [live("a", 0), live("b", 0), live("c", 0)], perPod: 20, want: { a: 20, b: 20, c: 20 } },
    { what: "water-fills: a pod near perPodCap is topped up, the others share what it could not take", cap: 30, claims: [live("a", 8), live("b", 0), live("c", 0)], perPod: 10, want: { a: 10, b: 10, c: 10 } },
    { what: "water-fills evenly: what a full pod could not take is not handed to the same pods as the first remainder", cap: 22, claims: [live("a", 0), live("b", 0), live("c", 0), live("d", 9)], perPod: 10, want: { a: 4, b: 4, c: 4, d: 10 } },
    { what: "keeps a stale pod's reservation out of the pool", cap: 100, claims: [live("a", 10), stale("s", 30, 50)], perPod: Infinity, want: { a: 50 } },
    { what: "reserves at least what a stale pod held when its pushed budget was lower", cap: 100, claims: [live("a", 0), stale("s", 70, 20)], perPod: Infinity, want: { a: 30 } },
    { what: "over the cap: proportional shares below what each pod holds", cap: 50, claims: [live("a", 60), live("b", 40)], perPod: Infinity, want: { a: 30, b: 20 } },
    { what: "exactly at the cap: each pod keeps what it holds and gets nothing more", cap: 50, claims: [live("a", 30), live("b", 20)], perPod: Infinity, want: { a: 30, b: 20 } },
    { what: "a cap of 0 gives every pod 0", cap: 0, claims: [live("a", 5), live("b", 0)], perPod: Infinity, want: { a: 0, b: 0 } },
    { what: "reservations above the cap leave nothing for live pods", cap: 10, claims: [live("a", 3), stale("s", 0, 20)], perPod: Infinity, want: { a: 0 } },
    { what: "a fractional cap is floored", cap: 10.9, claims: [live("a", 0), live("b", 0)], perPod: Infinity, want: { a: 5, b: 5 } },
  ])("$what", ({ cap, claims, perPod, want }) => {
    expect(asObject(splitCap(cap, claims, perPod))).toEqual(want);
  });

  it("returns no budgets when every pod is stale (nothing can be pushed)", () => {
    expect(splitCap(100, [stale("s", 1, 10)]).size).toBe(0);
    expect(splitCap(100, []).size).toBe(0);
  });

  it("is independent of the order of the claims", () => {
    const claims = [live("c", 3), live("a", 1), live("b", 2), stale("z", 5, 7)];
    expect(asObject(splitCap(23, claims, 9))).toEqual(asObject(splitCap(23, [...claims].reverse(), 9)));
  });
});

// Claims with unique names; some stale (with a reservation).
const claimsArb = fc.uniqueArray(
  fc.record({
    name: fc.string({ minLength: 1, maxLength: 6 }),
    used: fc.nat({ max: 500 }),
    reserved: fc.option(fc.nat({ max: 500 }), { nil: undefined }),
  }),
  { selector: (c) => c.name, maxLength: 12 },
).map((cs) => cs.map((c): BudgetClaim => (c.reserved === undefined ? { name: c.name, used: c.used } : c)));
const capArb = fc.nat({ max: 5000 });
const perPodArb = fc.oneof(fc.constant(Infinity), fc.nat({ max: 600 }));
// Small numbers, so that pods near perPodCap and uneven remainders are common.
const smallClaimsArb = fc.uniqueArray(
  fc.record({ name: fc.constantFrom("a", "b", "c", "d", "e", "f", "g"), used: fc.nat({ max: 12 }) }),
  { selector: (c) => c.name, maxLength: 7 },
);

const reservationOf = (c: BudgetClaim) => (c.reserved === undefined ? 0 : Math.max(c.reserved, c.used));
const liveClaims = (claims: BudgetClaim[]) => claims.filter((c) => c.reserved === undefined);

describe("splitCap: properties", () => {
  it("Σ live budgets + Σ reservations never exceeds the cap (when the reservations fit in it)", () => {
    fc.assert(fc.property(capArb, claimsArb, perPodArb, (cap, claims, perPod) => {
      const reservations = claims.reduce((s, c) => s + reservationOf(c), 0);
      const budgets = splitCap(cap, claims, perPod);
      const total = [...budgets.values()].reduce((s, b) => s + b, 0);
      if (reservations <= cap) expect(total + reservations).toBeLessThanOrEqual(cap);
      else expect(total).toBe(0);
    }), { numRuns: 2000 });
  });

  it("gives every live pod an integer budget in [0, perPodCap], and none to stale pods", () => {
    fc.assert(fc.property(capArb, claimsArb, perPodArb, (cap, claims, perPod) => {
      const budgets = splitCap(cap, claims, perPod);
      expect([...budgets.keys()].sort()).toEqual(liveClaims(claims).map((c) => c.name).sort());
      for (const b of budgets.values()) {
        expect(Number.isInteger(b)).toBe(true);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThanOrEqual(perPod);
      }
    }), { numRuns: 2000 });
  });

  it("with headroom, every live pod gets at least what it holds (capped at perPodCap) and the headroom is used up unless every pod is full", () => {
    fc.assert(fc.property(capArb, claimsArb, perPodArb, (cap, claims, perPod) => {
      const pool = Math.max(0, cap - claims.reduce((s, c) => s + reservationOf(c), 0));
      const lives = liveClaims(claims);
      const used = lives.reduce((s, c) => s + c.used, 0);
      fc.pre(lives.length > 0 && used < pool);
      const budgets = splitCap(cap, claims, perPod);
      for (const c of lives) expect(budgets.get(c.name)).toBeGreaterThanOrEqual(Math.min(c.used, perPod));
      const total = [...budgets.values()].reduce((s, b) => s + b, 0);
      const allFull = [...budgets.values()].every((b) => b === perPod);
      if (!allFull) expect(total).toBe(pool);
    }), { numRuns: 2000 });
  });

  it("with headroom, the share above what each pod holds is even ±1 among pods not at perPodCap", () => {
    fc.assert(fc.property(capArb, claimsArb, perPodArb, (cap, claims, perPod) => {
      const pool = Math.max(0, cap - claims.reduce((s, c) => s + reservationOf(c), 0));
      const lives = liveClaims(claims);
      fc.pre(lives.length > 0 && lives.reduce((s, c) => s + c.used, 0) < pool);
      const budgets = splitCap(cap, claims, perPod);
      const shares = lives.filter((c) => budgets.get(c.name)! < perPod).map((c) => budgets.get(c.name)! - c.used);
      if (shares.length > 1) expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
      // A pod at perPodCap got no more than the others' share would have been, ±1: the even
      // split's remainder may take a pod to the cap exactly (e.g. others 322, it 323).
      const bottom = shares.length > 0 ? Math.min(...shares) : Infinity;
      for (const c of lives) {
        if (budgets.get(c.name) === perPod && c.used < perPod) expect(perPod - c.used).toBeLessThanOrEqual(bottom + 1);
      }
    }), { numRuns: 3000 });
  });

  it("with headroom, the share is even ±1 among pods not at perPodCap (small numbers)", () => {
    fc.assert(fc.property(fc.nat({ max: 100 }), smallClaimsArb, fc.integer({ min: 1, max: 14 }), (cap, claims, perPod) => {
      fc.pre(claims.length > 0 && claims.reduce((s, c) => s + c.used, 0) < cap);
      const budgets = splitCap(cap, claims, perPod);
      const shares = claims.filter((c) => budgets.get(c.name)! < perPod).map((c) => budgets.get(c.name)! - c.used);
      if (shares.length > 1) expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
    }), { numRuns: 3000 });
  });

  it("over the cap, no live pod's budget is above what it holds", () => {
    fc.assert(fc.property(capArb, claimsArb, perPodArb, (cap, claims, perPod) => {
      const pool = Math.max(0, cap - claims.reduce((s, c) => s + reservationOf(c), 0));
      const lives = liveClaims(claims);
      fc.pre(lives.length > 0 && lives.reduce((s, c) => s + c.used, 0) >= pool);
      const budgets = splitCap(cap, claims, perPod);
      for (const c of lives) expect(budgets.get(c.name)).toBeLessThanOrEqual(c.used);
    }), { numRuns: 2000 });
  });
});
