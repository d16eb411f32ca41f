// Pure: the scale decision, after the HPA's algorithm (OPERATOR-NOTES.md §1): a ratio with a
// tolerance, clamped to [minReplicas, maxReplicas], stabilized over both windows, then held to
// the rate policies (so many pods or percent per period) given the scale events of each period.
import type { ScalingRatePolicy, ScalingSpec, SelectPolicy } from "../api/types.js";

/** Ratios within 1 ± this leave the replicas alone (the HPA's default tolerance). */
export const TOLERANCE = 0.1;

/** One past recommendation, kept for the stabilization windows. */
export interface Recommendation {
  atMs: number;
  replicas: number;
}

/** A scale this operator made: replicas added (> 0) or removed (< 0). */
export interface ScaleEvent {
  atMs: number;
  change: number;
}

export interface ScaleInput {
  nowMs: number;
  /** The target's spec.replicas (its scale subresource). */
  current: number;
  /** Connections over the target's pods (stale pods at their last known counts). */
  connections: number;
  /** Pods of the target whose counts are in `connections` (fresh, or last known while usable). */
  metricPods: number;
  /**
   * Pods of the target with no usable counts (their sidecar has not answered for too long).
   * As the HPA does with pods that have no metric: on a scale-down they count as at the target,
   * on a scale-up as empty, and the decision is made again on those numbers.
   */
  missingPods: number;
  spec: ScalingSpec;
  history: readonly Recommendation[];
  /** This operator's scales, for the rate policies' periods. */
  events: readonly ScaleEvent[];
}

/** Why ScalingLimited is True, with the HPA's reasons: a replica bound, or a rate policy. */
export type Limited = "TooManyReplicas" | "TooFewReplicas" | "ScaleUpLimit" | "ScaleDownLimit" | undefined;

export interface ScaleDecision {
  /** Replicas to run after stabilization. */
  desired: number;
  /** This interval's recommendation, before stabilization. */
  recommendation: number;
  /** The count asked for fell outside [minReplicas, maxReplicas], or changed faster than the rate policies allow. */
  limited: Limited;
  /** History to keep for the next decision (pruned to the longest window). */
  history: Recommendation[];
  /** A scale-down was held back by the down window (missing pods change the recommendation itself instead). */
  heldBack: boolean;
  /** Events to keep for the next decision (pruned to the longest policy period); the caller adds the scale it makes. */
  events: ScaleEvent[];
}

/**
 * desired = ceil(connections / targetConnectionsPerPod) unless the ratio to the current
 * replicas is within the tolerance; clamped; then the HPA's stabilization: the result starts
 * at the current count, is raised to the lowest recommendation within the scale-up window and
 * capped at the highest within the scale-down window.
 */
export function decideScale(input: ScaleInput): ScaleDecision {
  const { spec, current, connections, nowMs } = input;
  const raw = input.missingPods > 0 ? withMissingPods(input) : fromRatio(current, connections, spec.targetConnectionsPerPod);
  const limited: Limited = raw > spec.maxReplicas ? "TooManyReplicas" : raw < spec.minReplicas ? "TooFewReplicas" : undefined;
  const recommendation = Math.min(spec.maxReplicas, Math.max(spec.minReplicas, raw));

  const upFrom = nowMs - spec.scaleUpStabilizationSeconds * 1000;
  const downFrom = nowMs - spec.scaleDownStabilizationSeconds * 1000;
  const keepFrom = Math.min(upFrom, downFrom);
  const history = [...input.history.filter((r) => r.atMs > keepFrom && r.atMs <= nowMs), { atMs: nowMs, replicas: recommendation }];
  let up = recommendation;
  let down = recommendation;
  for (const r of history) {
    if (r.atMs > upFrom) up = Math.min(up, r.replicas);
    if (r.atMs > downFrom) down = Math.max(down, r.replicas);
  }
  const stabilized = Math.min(Math.max(current, up), down);

  const longest = Math.max(0, ...[...spec.scaleUpPolicies, ...spec.scaleDownPolicies].map((p) => p.periodSeconds));
  const events = input.events.filter((e) => e.atMs > nowMs - longest * 1000 && e.atMs <= nowMs);
  let desired = stabilized;
  let rateLimited: Limited;
  if (stabilized > current) {
    const limit = Math.max(current, rateLimit("up", current, events, nowMs, spec.scaleUpPolicies, spec.scaleUpSelectPolicy));
    if (stabilized > limit) [desired, rateLimited] = [limit, "ScaleUpLimit"];
  } else if (stabilized < current) {
    const limit = Math.min(current, rateLimit("down", current, events, nowMs, spec.scaleDownPolicies, spec.scaleDownSelectPolicy));
    if (stabilized < limit) [desired, rateLimited] = [limit, "ScaleDownLimit"];
  }
  return { desired, recommendation, limited: rateLimited ?? limited, history, heldBack: stabilized > recommendation, events };
}

/** As the HPA's Tolerances.isWithin: bounds compared as 1 ± t, both inclusive (|ratio − 1| would put an exact +10 % outside by a rounding error and an exact −10 % inside). */
function withinTolerance(ratio: number): boolean {
  return ratio >= 1 - TOLERANCE && ratio <= 1 + TOLERANCE;
}

/** Every pod has counts: ceil(connections / target), unless the ratio to the current replicas is within the tolerance. */
function fromRatio(current: number, connections: number, target: number): number {
  const ratio = current > 0 ? connections / (current * target) : Infinity;
  return withinTolerance(ratio) ? current : Math.ceil(connections / target);
}

/**
 * Some pods have no counts, as the HPA's replica calculator treats pods with no metric: the
 * direction comes from the pods with counts; then a missing pod counts as at the target on a
 * scale-down (so a silent sidecar cannot hide load) and as empty on a scale-up (so it cannot
 * invent load); the ratio is taken again over all pods, and if it is within the tolerance or
 * turned the other way, the replicas stay. A silent sidecar thus slows a scale-down but never
 * blocks it for good.
 */
function withMissingPods(input: ScaleInput): number {
  const { current, connections, metricPods, missingPods, spec } = input;
  const target = spec.targetConnectionsPerPod;
  if (metricPods === 0) return current;
  const usage = connections / (metricPods * target);
  const adjusted = usage < 1 ? connections + missingPods * target : connections;
  const newUsage = adjusted / ((metricPods + missingPods) * target);
  if (withinTolerance(newUsage) || (usage < 1 && newUsage > 1) || (usage > 1 && newUsage < 1)) return current;
  const replicas = Math.ceil(adjusted / target);
  if ((newUsage < 1 && replicas > current) || (newUsage > 1 && replicas < current)) return current;
  return replicas;
}

/**
 * The furthest the replicas may go in one direction, as the HPA's
 * calculateScaleUpLimitWithScalingRules and calculateScaleDownLimitWithBehaviors: each policy
 * starts from the count at the beginning of its period (current − the net change within it)
 * and allows `value` pods, or ceil(start × (1 + value %)) up and trunc(start × (1 − value %))
 * down; Max takes the most permissive policy, Min the least, Disabled (or no policy) none.
 */
function rateLimit(
  direction: "up" | "down", current: number, events: readonly ScaleEvent[], nowMs: number,
  policies: readonly ScalingRatePolicy[], select: SelectPolicy,
): number {
  if (select === "Disabled" || policies.length === 0) return current;
  const limits = policies.map((p) => {
    const from = nowMs - p.periodSeconds * 1000;
    const start = current - events.reduce((net, e) => (e.atMs > from ? net + e.change : net), 0);
    // Integer products, divided once: 10 + 10 % is 11, where 10 × 1.1 would round up to 12.
    if (direction === "up") return p.type === "Pods" ? start + p.value : Math.ceil((start * (100 + p.value)) / 100);
    return p.type === "Pods" ? start - p.value : Math.trunc((start * (100 - p.value)) / 100);
  });
  // Up, Max is the highest limit; down, Max is the lowest (the largest change).
  const mostPermissive = direction === "up" ? Math.max(...limits) : Math.min(...limits);
  const leastPermissive = direction === "up" ? Math.min(...limits) : Math.max(...limits);
  return select === "Max" ? mostPermissive : leastPermissive;
}
