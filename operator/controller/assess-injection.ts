// Injection (issue 16): the condition Injected, from the target's pods that run without the
// sidecar (created before the policy, or while the webhook was down with failurePolicy
// Ignore), and its Event. They are scraped like every pod and never answer; this names the
// cause and the fix instead of leaving it to Metered's ScrapeFailed.
import { COND_INJECTED, EVENT_PODS_WITHOUT_SIDECAR, REASON_ALL_PODS_INJECTED, REASON_PODS_WITHOUT_SIDECAR, REASON_TARGET_NOT_FOUND, type Condition, type PolicySpec } from "../api/types.js";
import type { EventSink, ObjectRef } from "./cluster.js";
import type { ConditionUpdate } from "./conditions.js";

/** Pod names listed in a message or in status.podsWithoutSidecar, at most. */
export const MAX_LISTED_PODS = 50;

/** Injected: True when every pod of the target runs the sidecar; False (PodsWithoutSidecar) naming them and the restart that fixes it. */
export function assessInjection(spec: PolicySpec, namespace: string, targetFound: boolean, missing: readonly string[]): ConditionUpdate {
  const { kind, name } = spec.targetRef;
  if (!targetFound) return { type: COND_INJECTED, status: "Unknown", reason: REASON_TARGET_NOT_FOUND, message: `${kind} ${name} was not found` };
  if (missing.length === 0) {
    return { type: COND_INJECTED, status: "True", reason: REASON_ALL_PODS_INJECTED, message: `every pod of ${kind} ${name} runs the connmeter sidecar` };
  }
  const listed = missing.slice(0, 10).join(", ") + (missing.length > 10 ? `, and ${missing.length - 10} more` : "");
  return {
    type: COND_INJECTED, status: "False", reason: REASON_PODS_WITHOUT_SIDECAR,
    message: `${missing.length} pod${missing.length === 1 ? "" : "s"} of ${kind} ${name} run without the connmeter sidecar and are not metered: ${listed}. `
      + "They were created before the policy, or while the injection webhook was down; restart them so the webhook injects it: "
      + `kubectl rollout restart ${kind.toLowerCase()}/${name} -n ${namespace}`,
  };
}

/** An Event when the target enters PodsWithoutSidecar (once per transition, like the other conditions' Events). */
export function emitInjectionEvents(events: EventSink, ref: ObjectRef, before: readonly Condition[] | undefined, after: readonly Condition[]): void {
  const a = after.find((c) => c.type === COND_INJECTED);
  if (a?.status !== "False" || a.reason !== REASON_PODS_WITHOUT_SIDECAR) return;
  const b = before?.find((c) => c.type === COND_INJECTED);
  if (b && b.status === a.status && b.reason === a.reason) return;
  events.record(ref, "Warning", EVENT_PODS_WITHOUT_SIDECAR, "Inject", a.message);
}
