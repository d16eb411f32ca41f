import { describe, expect, it } from "vitest";
import { selectorMatches, type LabelSelector } from "../../../../operator/controller/selector.js";

const labels = { app: "chat", tier: "web", canary: "" };

describe("selectorMatches", () => {
  it.each<{ what: string; selector: LabelSelector | undefined; want: boolean }>([
    { what: "matchLabels: every pair present", selector: { matchLabels: { app: "chat", tier: "web" } }, want: true },
    { what: "matchLabels: a value differs", selector: { matchLabels: { app: "chat", tier: "db" } }, want: false },
    { what: "matchLabels: a key is missing", selector: { matchLabels: { zone: "a" } }, want: false },
    { what: "matchLabels: an empty value matches an empty label", selector: { matchLabels: { canary: "" } }, want: true },
    { what: "In: the value is listed", selector: { matchExpressions: [{ key: "tier", operator: "In", values: ["api", "web"] }] }, want: true },
    { what: "In: the value is not listed", selector: { matchExpressions: [{ key: "tier", operator: "In", values: ["api"] }] }, want: false },
    { what: "In: the key is absent", selector: { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }, want: false },
    { what: "NotIn: the value is listed", selector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] }, want: false },
    { what: "NotIn: the value is not listed", selector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["db"] }] }, want: true },
    { what: "NotIn: the key is absent (matches, as in Kubernetes)", selector: { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }] }, want: true },
    { what: "Exists: present", selector: { matchExpressions: [{ key: "canary", operator: "Exists" }] }, want: true },
    { what: "Exists: absent", selector: { matchExpressions: [{ key: "zone", operator: "Exists" }] }, want: false },
    { what: "DoesNotExist: absent", selector: { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, want: true },
    { what: "DoesNotExist: present", selector: { matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, want: false },
    { what: "an unknown operator matches nothing", selector: { matchExpressions: [{ key: "app", operator: "Gt", values: ["1"] }] }, want: false },
    { what: "labels and expressions must all hold", selector: { matchLabels: { app: "chat" }, matchExpressions: [{ key: "tier", operator: "In", values: ["db"] }] }, want: false },
    { what: "labels and expressions that all hold", selector: { matchLabels: { app: "chat" }, matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }, { key: "zone", operator: "DoesNotExist" }] }, want: true },
    { what: "an empty selector matches nothing", selector: {}, want: false },
    { what: "empty lists match nothing", selector: { matchLabels: {}, matchExpressions: [] }, want: false },
    { what: "no selector matches nothing", selector: undefined, want: false },
  ])("$what", ({ selector, want }) => {
    expect(selectorMatches(selector, labels)).toBe(want);
  });

  it("a pod with no labels matches only selectors that ask for absence", () => {
    expect(selectorMatches({ matchLabels: { app: "chat" } }, undefined)).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, undefined)).toBe(true);
  });

  it("does not take inherited object properties for labels", () => {
    expect(selectorMatches({ matchExpressions: [{ key: "toString", operator: "Exists" }] }, {})).toBe(false);
  });
});
