import { describe, expect, it } from "vitest";
import { planFaults } from "../../soak/faults.js";
import { churnName, NAME_LENGTH } from "../../soak/policy-churn.js";
import { Rng } from "../../soak/rng.js";

describe("the soak's fault plan", () => {
  it("is the same for the same seed and differs for another", () => {
    expect(planFaults(450_000, new Rng(14))).toEqual(planFaults(450_000, new Rng(14)));
    expect(planFaults(450_000, new Rng(15))).not.toEqual(planFaults(450_000, new Rng(14)));
  });

  it("holds every kind the issue asks for, in time order, inside the span", () => {
    const plan = planFaults(450_000, new Rng(1));
    const kinds = new Set(plan.map((f) => f.kind));
    expect([...kinds].sort()).toEqual(["apiserver-restart", "leader-kill", "long-topic", "manual-scale", "sidecar-freeze", "sidecar-kill"]);
    expect(plan.filter((f) => f.kind === "apiserver-restart")).toHaveLength(1);
    expect(plan.filter((f) => f.kind === "leader-kill")).toHaveLength(2);
    expect(plan.map((f) => f.atMs)).toEqual([...plan.map((f) => f.atMs)].sort((a, b) => a - b));
    expect(plan.every((f) => f.atMs >= 0 && f.atMs <= 450_000)).toBe(true);
  });

  it("keeps every kind in a shortened soak", () => {
    expect(new Set(planFaults(120_000, new Rng(2)).map((f) => f.kind)).size).toBe(6);
  });
});

describe("churn policy names", () => {
  it("are 63 characters of a DNS label, unique per cycle", () => {
    const rng = new Rng(3);
    const names = Array.from({ length: 100 }, (_, i) => churnName(i, rng));
    for (const n of names) expect(n).toMatch(new RegExp(`^[a-z0-9]([-a-z0-9]{${NAME_LENGTH - 2}})[a-z0-9]$`));
    expect(new Set(names).size).toBe(100);
  });
});
