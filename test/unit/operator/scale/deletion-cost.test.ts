import { describe, expect, it } from "vitest";
import { deletionCosts, type CostPod } from "../../../../operator/scale/deletion-cost.js";

const p = (name: string, connections: number | undefined, current?: string): CostPod => ({ name, connections, current });

describe("deletionCosts", () => {
  it("gives each pod its connection count, so the emptiest pods go first", () => {
    expect(Object.fromEntries(deletionCosts([p("busy", 120), p("idle", 0), p("some", 7)]))).toEqual({ busy: "120", idle: "0", some: "7" });
  });

  it.each([
    { what: "leaves a pod whose cost already matches alone (no pod write)", pod: p("a", 5, "5"), want: undefined },
    { what: "rewrites a stale cost", pod: p("a", 5, "3"), want: "5" },
    { what: "writes a cost on a pod that has none", pod: p("a", 0, undefined), want: "0" },
    { what: "leaves a pod with unknown counts alone (a cost would be a guess)", pod: p("a", undefined, "42"), want: undefined },
    { what: "clamps to int32, as the API server parses it", pod: p("a", 3e9), want: "2147483647" },
    { what: "never writes a negative cost", pod: p("a", -4), want: "0" },
    { what: "rounds a non-integer count", pod: p("a", 2.6), want: "3" },
  ])("$what", ({ pod, want }) => {
    expect(deletionCosts([pod]).get("a")).toBe(want);
  });

  it("returns only the writes that change something", () => {
    const writes = deletionCosts([p("a", 1, "1"), p("b", 2, "1"), p("c", undefined)]);
    expect([...writes.keys()]).toEqual(["b"]);
  });
});
