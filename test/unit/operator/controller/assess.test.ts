import { describe, expect, it } from "vitest";
import { aggregate, type PodObservation, type SidecarSample } from "../../../../operator/aggregate/aggregate.js";
import { withDefaults, type Condition, type ConnectionPolicy, type PolicySpec } from "../../../../operator/api/types.js";
import { assessCapacity, assessMetering, assessScaling, emitTransitionEvents } from "../../../../operator/controller/assess.js";
import type { EventSink, ObjectRef } from "../../../../operator/controller/cluster.js";
import { setCondition, type ConditionUpdate } from "../../../../operator/controller/conditions.js";
import { PodSamples } from "../../../../operator/controller/pod-samples.js";
import type { ScaleDecision } from "../../../../operator/scale/decide.js";

const spec = (over: Partial<ConnectionPolicy["spec"]> = {}): PolicySpec => withDefaults({
  targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" },
  scaling: { minReplicas: 2, maxReplicas: 8, targetConnectionsPerPod: 100, scaleUpStabilizationSeconds: 0, scaleDownStabilizationSeconds: 300, connectionAwareScaleDown: true },
  ...over,
});
const sample = (connections: number, topics: Record<string, number> = {}): SidecarSample => ({ connections, channels: 0, longpoll: 0, topics });
const obs = (name: string, s: SidecarSample | undefined, stale = false): PodObservation => ({ name, node: "n", ready: true, sample: s, stale });

async function samplesWithFailures(names: string[]): Promise<PodSamples> {
  const samples = new PodSamples();
  await samples.scrape(names.map((name) => ({ name, ip: "198.18.0.1", node: "n", ready: true, terminating: false })), (t) => Promise.reject(new Error(`refused ${t.name}`)), 0);
  return samples;
}

describe("assessMetering", () => {
  it("a missing target: False TargetNotFound, naming the kind and name", async () => {
    const c = assessMetering(spec(), false, 0, aggregate([], []), new PodSamples());
    expect(c).toMatchObject({ type: "Metered", status: "False", reason: "TargetNotFound" });
    expect(c.message).toContain("Deployment chat");
  });

  it("a target with no scrapable pod: False NoPods", () => {
    expect(assessMetering(spec(), true, 0, aggregate([], []), new PodSamples())).toMatchObject({ status: "False", reason: "NoPods" });
  });

  it("every pod answered: True AllPodsScraped", () => {
    const c = assessMetering(spec(), true, 2, aggregate([obs("a", sample(1)), obs("b", sample(2))], []), new PodSamples());
    expect(c).toMatchObject({ status: "True", reason: "AllPodsScraped", message: "2 of 2 pods answered GET /stats" });
  });

  it("a pod that did not answer: False ScrapeFailed naming it, its error and the admin port", async () => {
    const agg = aggregate([obs("a", sample(1)), obs("b", sample(2), true)], []);
    const c = assessMetering(spec({ sidecar: { adminPort: 9191 } }), true, 2, agg, await samplesWithFailures(["b"]));
    expect(c).toMatchObject({ type: "Metered", status: "False", reason: "ScrapeFailed" });
    expect(c.message).toContain("1 of 2 pods");
    expect(c.message).toContain("b (refused b)");
    expect(c.message).toContain("9191");
    expect(c.message).not.toContain("lower bound");
  });

  it("says the totals are a lower bound when a stale pod has no usable counts", async () => {
    const agg = aggregate([obs("a", sample(1)), obs("b", undefined, true)], []);
    const c = assessMetering(spec(), true, 2, agg, await samplesWithFailures(["b"]));
    expect(c.message).toContain("1 of them has no usable counts, so the totals are a lower bound");
  });

  it("names at most 10 pods and counts the rest", async () => {
    const names = Array.from({ length: 13 }, (_, i) => `p${String(i).padStart(2, "0")}`);
    const agg = aggregate(names.map((n) => obs(n, undefined, true)), []);
    const c = assessMetering(spec(), true, 13, agg, await samplesWithFailures(names));
    expect(c.message).toContain("p09 (");
    expect(c.message).not.toContain("p10 (");
    expect(c.message).toContain("and 3 more");
  });
});

describe("assessCapacity", () => {
  it("no cap: False NoClusterCap and no capacity", () => {
    const r = assessCapacity(spec(), aggregate([obs("a", sample(10))], []));
    expect(r.capacity).toBeUndefined();
    expect(r.condition).toMatchObject({ type: "AtCapacity", status: "False", reason: "NoClusterCap" });
  });

  it("below the cluster cap: False BelowCapacity with the capacity in use in whole percent", () => {
    const r = assessCapacity(spec({ limits: { maxConnections: 300 } }), aggregate([obs("a", sample(200))], []));
    expect(r.capacity).toEqual({ maxConnections: 300, connections: 200, usedPercent: 66 });
    expect(r.condition).toMatchObject({ status: "False", reason: "BelowCapacity", message: "200/300 connections (66%)" });
  });

  it("at the cluster cap: True AtCapacity saying what refuses what", () => {
    const r = assessCapacity(spec({ limits: { maxConnections: 200 } }), aggregate([obs("a", sample(200))], []));
    expect(r.condition).toMatchObject({ status: "True", reason: "AtCapacity" });
    expect(r.condition.message).toContain("200/200 connections");
    expect(r.condition.message).toContain("503");
  });

  it("a topic group at its maxChannels: True AtCapacity naming the group", () => {
    const groups = [{ match: "room:*", maxChannels: 5 }, { match: "user:*", maxChannels: 50 }];
    const r = assessCapacity(spec({ topics: groups }), aggregate([obs("a", sample(1, { "room:1": 5, "user:1": 3 }))], groups));
    expect(r.capacity).toBeUndefined();
    expect(r.condition).toMatchObject({ status: "True", reason: "AtCapacity" });
    expect(r.condition.message).toContain("room:* 5/5 channels");
    expect(r.condition.message).not.toContain("user:*");
  });

  it("group caps only, all below: False BelowCapacity", () => {
    const groups = [{ match: "room:*", maxChannels: 5 }];
    const r = assessCapacity(spec({ topics: groups }), aggregate([obs("a", sample(1, { "room:1": 4 }))], groups));
    expect(r.condition).toMatchObject({ status: "False", reason: "BelowCapacity" });
  });
});

describe("assessScaling", () => {
  const decision = (over: Partial<ScaleDecision> = {}): ScaleDecision =>
    ({ desired: 4, recommendation: 4, limited: undefined, history: [], heldBack: false, events: [], ...over });

  it.each([
    { what: "no target: both False TargetNotFound", outcome: undefined, active: ["False", "TargetNotFound"], limited: ["False", "TargetNotFound"] },
    { what: "no spec.scaling: ObserveOnly", outcome: { mode: "observe", current: 3 }, active: ["False", "ObserveOnly"], limited: ["False", "ObserveOnly"] },
    { what: "an HPA on the target: HPAConflict", outcome: { mode: "hpaConflict", current: 3, hpa: "chat-hpa" }, active: ["False", "HPAConflict"], limited: ["False", "HPAConflict"] },
    { what: "0 replicas: ScalingDisabled", outcome: { mode: "scaledToZero", current: 0 }, active: ["False", "ScalingDisabled"], limited: ["False", "ScalingDisabled"] },
    { what: "no counts yet: NoPods", outcome: { mode: "noMetric", current: 3 }, active: ["False", "NoPods"], limited: ["False", "NoPods"] },
    { what: "within range: ValidMetricFound, DesiredWithinRange", outcome: { mode: "active", current: 3, decision: decision(), kind: "Deployment", scaledAt: undefined }, active: ["True", "ValidMetricFound"], limited: ["False", "DesiredWithinRange"] },
    { what: "over maxReplicas: TooManyReplicas", outcome: { mode: "active", current: 3, decision: decision({ limited: "TooManyReplicas" }), kind: "Deployment", scaledAt: undefined }, active: ["True", "ValidMetricFound"], limited: ["True", "TooManyReplicas"] },
    { what: "under minReplicas: TooFewReplicas", outcome: { mode: "active", current: 3, decision: decision({ limited: "TooFewReplicas" }), kind: "Deployment", scaledAt: undefined }, active: ["True", "ValidMetricFound"], limited: ["True", "TooFewReplicas"] },
  ] as const)("$what", ({ outcome, active, limited }) => {
    const r = assessScaling(spec(), outcome);
    expect(r.active).toMatchObject({ type: "ScalingActive", status: active[0], reason: active[1] });
    expect(r.limited).toMatchObject({ type: "ScalingLimited", status: limited[0], reason: limited[1] });
    expect(r.active.message.length).toBeGreaterThan(0);
  });

  it("names the conflicting HPA", () => {
    expect(assessScaling(spec(), { mode: "hpaConflict", current: 3, hpa: "chat-hpa" }).active.message).toContain("HorizontalPodAutoscaler chat-hpa");
  });

  it("says the desired count, and when a scale-down is held back by the window", () => {
    const plain = assessScaling(spec(), { mode: "active", current: 6, decision: decision({ desired: 6 }), kind: "Deployment", scaledAt: undefined });
    expect(plain.active.message).toContain("desired 6 replicas");
    expect(plain.active.message).not.toContain("held back");
    const held = assessScaling(spec(), { mode: "active", current: 6, decision: decision({ desired: 6, recommendation: 3, heldBack: true }), kind: "Deployment", scaledAt: undefined });
    expect(held.active.message).toContain("A scale-down to 3 is held back by the 300 s scale-down stabilization window");
  });

  it("tells a StatefulSet's owner that the highest ordinal goes first", () => {
    const r = assessScaling(spec(), { mode: "active", current: 6, decision: decision(), kind: "StatefulSet", scaledAt: undefined });
    expect(r.active.message).toContain("highest ordinal");
    const d = assessScaling(spec(), { mode: "active", current: 6, decision: decision(), kind: "Deployment", scaledAt: undefined });
    expect(d.active.message).not.toContain("highest ordinal");
  });
});

describe("emitTransitionEvents", () => {
  const ref: ObjectRef = { apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy", namespace: "ns", name: "p" };
  const recorder = () => {
    const events: { type: string; reason: string; note: string }[] = [];
    const sink: EventSink = { record: (_r, type, reason, _action, note) => events.push({ type, reason, note }) };
    return { events, sink };
  };
  const conds = (...updates: ConditionUpdate[]): Condition[] => updates.reduce<Condition[]>((l, u) => setCondition(l, u, 1, "2026-01-01T00:00:00Z"), []);
  const metered = (status: "True" | "False", reason: string, message = reason): ConditionUpdate => ({ type: "Metered", status, reason, message });
  const cap = (status: "True" | "False", reason: string): ConditionUpdate => ({ type: "AtCapacity", status, reason, message: `${reason}!` });

  it.each([
    { what: "ScrapeFailed when Metered turns False with it", before: conds(metered("True", "AllPodsScraped")), after: conds(metered("False", "ScrapeFailed", "pod b")), want: [{ type: "Warning", reason: "ScrapeFailed", note: "pod b" }] },
    { what: "ScrapeFailed on the first visit", before: undefined, after: conds(metered("False", "ScrapeFailed")), want: [{ type: "Warning", reason: "ScrapeFailed", note: "ScrapeFailed" }] },
    { what: "nothing while ScrapeFailed stays (even with a new message)", before: conds(metered("False", "ScrapeFailed", "pod b")), after: conds(metered("False", "ScrapeFailed", "pod c")), want: [] },
    { what: "TargetNotFound when the reason turns to it with the status unchanged", before: conds(metered("False", "ScrapeFailed")), after: conds(metered("False", "TargetNotFound")), want: [{ type: "Warning", reason: "TargetNotFound", note: "TargetNotFound" }] },
    { what: "nothing when Metered recovers", before: conds(metered("False", "ScrapeFailed")), after: conds(metered("True", "AllPodsScraped")), want: [] },
    { what: "AtCapacity when it turns True", before: conds(cap("False", "BelowCapacity")), after: conds(cap("True", "AtCapacity")), want: [{ type: "Warning", reason: "AtCapacity", note: "AtCapacity!" }] },
    { what: "nothing while AtCapacity stays True", before: conds(cap("True", "AtCapacity")), after: conds(cap("True", "AtCapacity")), want: [] },
    { what: "nothing when AtCapacity turns False", before: conds(cap("True", "AtCapacity")), after: conds(cap("False", "BelowCapacity")), want: [] },
    { what: "nothing for a NoPods Metered condition", before: undefined, after: conds(metered("False", "NoPods")), want: [] },
  ])("$what", ({ before, after, want }) => {
    const { events, sink } = recorder();
    emitTransitionEvents(sink, ref, before, after);
    expect(events).toEqual(want);
  });

  it("emits once per transition over many calls, not every call", () => {
    const { events, sink } = recorder();
    const seq = [
      conds(metered("True", "AllPodsScraped")),
      conds(metered("False", "ScrapeFailed")),
      conds(metered("False", "ScrapeFailed")),
      conds(metered("False", "ScrapeFailed")),
      conds(metered("True", "AllPodsScraped")),
      conds(metered("False", "ScrapeFailed")),
    ];
    for (let i = 1; i < seq.length; i++) emitTransitionEvents(sink, ref, seq[i - 1], seq[i]!);
    expect(events.map((e) => e.reason)).toEqual(["ScrapeFailed", "ScrapeFailed"]);
  });
});
