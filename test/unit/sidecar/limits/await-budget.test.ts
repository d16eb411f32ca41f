import { describe, expect, it } from "vitest";
import { Admission, DEFAULT_LIMITS, REFUSE_AWAITING_BUDGET } from "../../../../sidecar/limits/admission.js";

describe("Admission awaiting the operator's first push (--await-budget-seconds)", () => {
  it("refuses upgrades with 503 and a Retry-After of at most 5 s, and is not ready, until the wait runs out", () => {
    let now = 1_000_000;
    const a = new Admission(DEFAULT_LIMITS, () => now, 30);
    expect(a.checkUpgrade(0)).toEqual({ statusCode: 503, reason: REFUSE_AWAITING_BUDGET, retryAfterSeconds: 5 });
    expect(a.isReady(0)).toBe(false);
    now += 28_500; // 1.5 s left
    expect(a.checkUpgrade(0)?.retryAfterSeconds).toBe(2);
    now += 1_500;
    expect(a.isAwaitingBudget).toBe(false);
    expect(a.checkUpgrade(0)).toBeNull();
    expect(a.isReady(0)).toBe(true);
  });

  it("stops waiting at the first push", () => {
    const a = new Admission(DEFAULT_LIMITS, () => 0, 30);
    a.budgetReceived();
    expect(a.checkUpgrade(0)).toBeNull();
    expect(a.isReady(0)).toBe(true);
  });

  it("reports draining before awaiting: a pod shutting down never admits again", () => {
    const a = new Admission(DEFAULT_LIMITS, () => 0, 30);
    a.startDraining();
    a.budgetReceived();
    expect(a.checkUpgrade(0)?.reason).toBe("draining");
  });

  it("does not wait at all with 0 seconds (the default)", () => {
    const a = new Admission(DEFAULT_LIMITS, () => 0);
    expect(a.isAwaitingBudget).toBe(false);
    expect(a.checkUpgrade(0)).toBeNull();
  });
});
