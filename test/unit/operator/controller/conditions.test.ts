import { describe, expect, it } from "vitest";
import type { Condition } from "../../../../operator/api/types.js";
import { findCondition, setCondition, turned, type ConditionUpdate } from "../../../../operator/controller/conditions.js";

const T0 = "2026-01-01T00:00:00.000Z";
const T1 = "2026-01-01T00:05:00.000Z";
const metered = (status: Condition["status"], reason = "AllPodsScraped", message = "ok"): ConditionUpdate => ({ type: "Metered", status, reason, message });

describe("setCondition", () => {
  it("appends a new type with lastTransitionTime now and the generation", () => {
    const list = setCondition([], metered("True"), 3, T0);
    expect(list).toEqual([{ type: "Metered", status: "True", reason: "AllPodsScraped", message: "ok", observedGeneration: 3, lastTransitionTime: T0 }]);
  });

  it("keeps lastTransitionTime when the status stays, while reason, message and observedGeneration move", () => {
    const before = setCondition([], metered("False", "ScrapeFailed", "pod a"), 1, T0);
    const after = setCondition(before, metered("False", "TargetNotFound", "gone"), 2, T1);
    expect(after[0]).toEqual({ type: "Metered", status: "False", reason: "TargetNotFound", message: "gone", observedGeneration: 2, lastTransitionTime: T0 });
  });

  it.each([
    { from: "True", to: "False" },
    { from: "False", to: "True" },
    { from: "Unknown", to: "True" },
  ] as const)("moves lastTransitionTime when the status turns from $from to $to", ({ from, to }) => {
    const after = setCondition(setCondition([], metered(from), 1, T0), metered(to), 1, T1);
    expect(after[0]!.lastTransitionTime).toBe(T1);
  });

  it("replaces the condition of that type in place and leaves the others and the input alone", () => {
    const other: Condition = { type: "AtCapacity", status: "False", reason: "NoClusterCap", message: "", observedGeneration: 1, lastTransitionTime: T0 };
    const before = [setCondition([], metered("True"), 1, T0)[0]!, other];
    const frozen = structuredClone(before);
    const after = setCondition(before, metered("False", "ScrapeFailed"), 2, T1);
    expect(after.map((c) => c.type)).toEqual(["Metered", "AtCapacity"]);
    expect(after[1]).toBe(other);
    expect(before).toEqual(frozen);
  });

  it("truncates a message over 32768 characters to exactly 32768, ending in an ellipsis", () => {
    const c = setCondition([], metered("True", "R", "x".repeat(40_000)), 1, T0)[0]!;
    expect(c.message).toHaveLength(32_768);
    expect(c.message.endsWith("x…")).toBe(true);
  });

  it("keeps a message of exactly 32768 characters whole", () => {
    const message = "y".repeat(32_768);
    expect(setCondition([], metered("True", "R", message), 1, T0)[0]!.message).toBe(message);
  });
});

describe("findCondition and turned", () => {
  const t = setCondition([], metered("True"), 1, T0);
  const f = setCondition([], metered("False", "ScrapeFailed"), 1, T0);

  it("finds by type, or nothing", () => {
    expect(findCondition(t, "Metered")?.status).toBe("True");
    expect(findCondition(t, "AtCapacity")).toBeUndefined();
    expect(findCondition(undefined, "Metered")).toBeUndefined();
  });

  it.each([
    { what: "True → False turned False", before: t, after: f, status: "False", want: true },
    { what: "False → False did not turn", before: f, after: f, status: "False", want: false },
    { what: "nothing → False turned False", before: undefined, after: f, status: "False", want: true },
    { what: "False → True did not turn False", before: f, after: t, status: "False", want: false },
  ] as const)("$what", ({ before, after, status, want }) => {
    expect(turned(before, after, "Metered", status)).toBe(want);
  });
});
