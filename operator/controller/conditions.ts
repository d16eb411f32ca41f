// Conditions after Kubernetes conventions and apimachinery's meta.SetStatusCondition: one per
// type; lastTransitionTime changes only when the status does.
import type { Condition, ConditionStatus } from "../api/types.js";

export interface ConditionUpdate {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** Kubernetes' limit on a condition message. */
const MAX_MESSAGE = 32_768;

/** The list with `update` applied (a new array; the input is not changed). */
export function setCondition(list: readonly Condition[], update: ConditionUpdate, generation: number, nowIso: string): Condition[] {
  const message = update.message.length > MAX_MESSAGE ? `${update.message.slice(0, MAX_MESSAGE - 1)}…` : update.message;
  const existing = list.find((c) => c.type === update.type);
  const next: Condition = {
    type: update.type,
    status: update.status,
    observedGeneration: generation,
    lastTransitionTime: existing && existing.status === update.status ? existing.lastTransitionTime : nowIso,
    reason: update.reason,
    message,
  };
  return existing ? list.map((c) => (c === existing ? next : c)) : [...list, next];
}

/** The condition of `type`, if set. */
export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}

/** Whether the condition of `type` moved to `status` between `before` and `after`. */
export function turned(before: readonly Condition[] | undefined, after: readonly Condition[], type: string, status: ConditionStatus): boolean {
  return findCondition(before, type)?.status !== status && findCondition(after, type)?.status === status;
}
