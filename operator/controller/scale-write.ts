// Writing a scale decision as the HPA does (OPERATOR-NOTES §1, "Scale subresource"): read the
// target's scale subresource, decide from the replicas it shows, write back with its
// resourceVersion; on 409 Conflict (a `kubectl scale`, a GitOps sync) read and decide again.
// Each write carries exactly one decision, made from the read it is conditioned on, so a
// concurrent change is never undone by a decision made before it.
import type { TargetKind } from "../api/types.js";
import type { ScaleDecision } from "../scale/decide.js";
import { isConflict, type ClusterWriter } from "./cluster.js";

/** Read-decide-write rounds in one reconcile before giving up until the next interval. */
export const MAX_SCALE_ATTEMPTS = 3;

/** A decision and the replicas it was made from. */
export interface DecidedScale {
  current: number;
  decision: ScaleDecision;
}

export interface ScaleWriteResult extends DecidedScale {
  /** The decision's replicas were written. */
  written: boolean;
  /** The fresh read shows 0 replicas: scaling is off, as the HPA's ScalingDisabled. */
  scaledToZero?: boolean;
  /** Why nothing was written although the decision asked for a change (for ScalingActive). */
  error?: string;
}

/**
 * Writes a scale decision with a resourceVersion precondition. `decide` is called once per
 * read with that read's spec.replicas; `beforeScaleDown` runs before a write that lowers them
 * (deletion costs). `cached` is returned when the subresource cannot be read.
 */
export async function writeScale(
  writer: Pick<ClusterWriter, "getScale" | "patchScale">,
  target: { kind: TargetKind; namespace: string; name: string },
  cached: DecidedScale,
  decide: (current: number) => ScaleDecision,
  beforeScaleDown: () => Promise<void>,
): Promise<ScaleWriteResult> {
  const { kind, namespace, name } = target;
  let state = cached;
  for (let attempt = 1; attempt <= MAX_SCALE_ATTEMPTS; attempt++) {
    let scale;
    try {
      scale = await writer.getScale(kind, namespace, name);
    } catch (err) {
      return { ...state, written: false, error: `reading the scale subresource of ${kind} ${name} failed: ${(err as Error).message} (the operator needs get on ${kind.toLowerCase()}s/scale)` };
    }
    if (!scale) return { ...state, written: false, error: `${kind} ${name} was not found when its scale was read` };
    if (scale.replicas === 0) return { ...state, current: 0, written: false, scaledToZero: true };
    state = { current: scale.replicas, decision: decide(scale.replicas) };
    if (state.decision.desired === state.current) return { ...state, written: false };
    try {
      if (state.decision.desired < state.current) await beforeScaleDown();
      await writer.patchScale(kind, namespace, name, state.decision.desired, scale.resourceVersion);
      return { ...state, written: true };
    } catch (err) {
      if (!isConflict(err)) return { ...state, written: false, error: (err as Error).message };
    }
  }
  return {
    ...state, written: false,
    error: `spec.replicas of ${kind} ${name} changed between read and write ${MAX_SCALE_ATTEMPTS} times (409 Conflict): another actor writes it `
      + `(kubectl scale, an HPA, a GitOps tool applying spec.replicas). Leave the replicas to this policy, or remove spec.scaling; decided again next interval`,
  };
}
