import { describe, expect, it } from "vitest";
import { Admission, DEFAULT_LIMITS, TokenBucket } from "../../../../sidecar/limits/admission.js";

describe("Admission", () => {
  it("refuses upgrades exactly at the connection cap with 503 and Retry-After", () => {
    const a = new Admission({ ...DEFAULT_LIMITS, maxConnections: 3 });
    expect(a.checkUpgrade(2)).toBeNull();
    expect(a.checkUpgrade(3)).toMatchObject({ statusCode: 503, reason: "capacity" });
    expect(a.checkUpgrade(3)!.retryAfterSeconds).toBeGreaterThan(0);
  });

  it("admits everything when no cap is set", () => {
    expect(new Admission(DEFAULT_LIMITS).checkUpgrade(1e6)).toBeNull();
  });

  it("turns readiness off at rejectAtPercent and back on only below it minus the hysteresis", () => {
    const a = new Admission({ ...DEFAULT_LIMITS, maxConnections: 100, rejectAtPercent: 80 });
    const seq = [79, 80, 79, 76, 75, 74, 80].map((n) => a.isReady(n));
    expect(seq).toEqual([true, false, false, false, false, true, false]);
  });

  it("refuses everything and reports not ready once draining", () => {
    const a = new Admission(DEFAULT_LIMITS);
    a.startDraining();
    expect(a.isReady(0)).toBe(false);
    expect(a.checkUpgrade(0)).toMatchObject({ statusCode: 503, reason: "draining" });
  });

  it("rate-limits upgrade floods with 429 once the burst is spent, refilling over time", () => {
    let now = 0;
    const a = new Admission({ ...DEFAULT_LIMITS, upgradeRatePerSecond: 10, upgradeBurst: 3 }, () => now);
    expect([0, 0, 0, 0].map((n) => a.checkUpgrade(n)?.reason ?? "ok")).toEqual(["ok", "ok", "ok", "rate"]);
    expect(a.checkUpgrade(0)?.statusCode).toBe(429);
    now += 100;
    expect(a.checkUpgrade(0)).toBeNull();
    expect(a.checkUpgrade(0)?.reason).toBe("rate");
  });

  it("applies new limits without losing the draining state", () => {
    const a = new Admission(DEFAULT_LIMITS);
    a.update({ ...DEFAULT_LIMITS, maxConnections: 1 });
    expect(a.checkUpgrade(1)?.reason).toBe("capacity");
    expect(a.current.maxConnections).toBe(1);
  });
});

describe("TokenBucket", () => {
  it("never holds more than its burst", () => {
    let now = 0;
    const b = new TokenBucket(() => now);
    b.configure(1, 2);
    now += 60_000;
    expect([b.take(), b.take(), b.take()]).toEqual([true, true, false]);
    expect(b.secondsUntilToken()).toBe(1);
  });
});
