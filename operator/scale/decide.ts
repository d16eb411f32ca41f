// Pure: the scale decision, after the HPA's algorithm (OPERATOR-NOTES.md §1): a ratio with a
// tolerance, clamped to [minReplicas, maxReplicas], stabilized over both windows.
import type { ScalingSpec } from "../api/types.js";

/** Ratios within 1 ± this leave the replicas alone (the HPA's default tolerance). */
export const TOLERANCE = 0.1;

/** One past recommendation, kept for the stabilization windows. */
export interface Recommendation {
  atMs: number;
  replicas: number;
}

export interface ScaleInput {
  nowMs: number;
  /** The target's spec.replicas (its scale subresource). */
  current: number;
  /** Connections over the target's pods (stale pods at their last known counts). */
  connections: number;
  /** Some pod's counts are unknown: the total is a lower bound, so never scale down on it. */
  incomplete: boolean;
  spec: ScalingSpec;
  history: readonly Recommendation[];
}

export type Limited = "TooManyReplicas" | "TooFewReplicas" | undefined;

export interface ScaleDecision {
  /** Replicas to run after stabilization. */
  desired: number;
  /** This interval's recommendation, before stabilization. */
  recommendation: number;
  /** The unclamped count asked for fell outside [minReplicas, maxReplicas]. */
  limited: Limited;
  /** History to keep for the next decision (pruned to the longest window). */
  history: Recommendation[];
  /** A scale-down was held back by the down window (incomplete counts change the recommendation itself instead). */
  heldBack: boolean;
}

/**
 * desired = ceil(connections / targetConnectionsPerPod) unless the ratio to the current
 * replicas is within the tolerance; clamped; then the HPA's stabilization: the result starts
 * at the current count, is raised to the lowest recommendation within the scale-up window and
 * capped at the highest within the scale-down window.
 */
export function decideScale(input: ScaleInput): ScaleDecision {
  const { spec, current, connections, nowMs } = input;
  const wanted = Math.ceil(connections / spec.targetConnectionsPerPod);
  const ratio = current > 0 ? connections / (current * spec.targetConnectionsPerPod) : Infinity;
  // As the HPA's Tolerances.isWithin: bounds compared as 1 ± t, both inclusive (|ratio − 1| would
  // put an exact +10 % outside by a rounding error and an exact −10 % inside).
  let raw = ratio >= 1 - TOLERANCE && ratio <= 1 + TOLERANCE ? current : wanted;
  if (input.incomplete && raw < current) raw = current;
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
  const desired = Math.min(Math.max(current, up), down);
  return { desired, recommendation, limited, history, heldBack: desired > recommendation };
}
