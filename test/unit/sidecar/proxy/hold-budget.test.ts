import { describe, expect, it } from "vitest";
import { HoldBudget, type BudgetedHolder } from "../../../../sidecar/proxy/hold-budget.js";

class Holder implements BudgetedHolder {
  heldCost = 0;
  paused = false;
  constructor(private readonly budget: HoldBudget) {}
  hold(cost: number): this {
    this.heldCost = cost;
    this.budget.update(this);
    return this;
  }
  pauseForBudget(): void {
    this.paused = true;
  }
  resumeFromBudget(): void {
    this.paused = false;
  }
}

describe("HoldBudget", () => {
  it("pauses nobody under the budget", () => {
    const budget = new HoldBudget(1000);
    const holders = [300, 300, 300].map((c) => new Holder(budget).hold(c));
    expect(holders.some((h) => h.paused)).toBe(false);
    expect(budget.totalCost).toBe(900);
  });

  it("past the budget pauses the heaviest holder still reading, at each further growth", () => {
    const budget = new HoldBudget(1000);
    const [a, b, c] = [600, 300, 50].map((x) => new Holder(budget).hold(x)) as [Holder, Holder, Holder];
    c.hold(200); // 1100 > 1000: the heaviest (a) is paused, not the one that grew
    expect([a.paused, b.paused, c.paused]).toEqual([true, false, false]);
    c.hold(250); // still over and growing: the heaviest still reading (b)
    expect([a.paused, b.paused, c.paused]).toEqual([true, true, false]);
    expect(budget.pausedHolders).toBe(2);
    expect(budget.pauses).toBe(2);
  });

  it("reads paused holders again once the total is back under half the budget", () => {
    const budget = new HoldBudget(1000);
    const a = new Holder(budget).hold(700);
    const b = new Holder(budget).hold(400);
    expect(a.paused).toBe(true);
    b.hold(0); // 700: still above half
    expect(a.paused).toBe(true);
    budget.remove(a); // its socket closed
    expect(budget.totalCost).toBe(0);
    const c = new Holder(budget).hold(900);
    const d = new Holder(budget).hold(200);
    expect(c.paused).toBe(true);
    c.hold(100); // the paused holder shrank: 300 ≤ 500
    expect([c.paused, d.paused]).toEqual([false, false]);
  });

  it("reads a paused holder again as soon as it holds nothing", () => {
    const budget = new HoldBudget(100);
    const big = new Holder(budget).hold(5000);
    expect(big.paused).toBe(true); // alone, but past the budget
    const small = new Holder(budget).hold(10);
    expect(small.paused).toBe(true); // the heaviest still reading
    big.hold(0); // its held bytes went on (the message ended): read it again; 10 ≤ 50: all again
    expect(big.paused).toBe(false);
    expect(small.paused).toBe(false);
  });
});
