// The one place where the outcome of a reconcile becomes conditions (and, on their
// transitions, Events). Pure, except emitTransitionEvents, which only records Events.
import type { Aggregate } from "../aggregate/aggregate.js";
import {
  COND_INJECTED,
  REASON_PODS_NOT_STARTING, COND_AT_CAPACITY, COND_LIMITS_APPLIED, COND_READY, REASON_METERED, EVENT_CONFIG_PUSH_FAILED, REASON_CONFIG_ACCEPTED, REASON_CONFIG_PUSH_FAILED, COND_METERED, COND_SCALING_ACTIVE, COND_SCALING_LIMITED, EVENT_AT_CAPACITY, EVENT_FAILED_SCALE, EVENT_SCRAPE_FAILED,
  EVENT_TARGET_NOT_FOUND, REASON_ALL_PODS_SCRAPED, REASON_AT_CAPACITY, REASON_BELOW_CAPACITY, REASON_HPA_CONFLICT,
  REASON_FAILED_UPDATE_SCALE, REASON_NO_CAP, REASON_NO_PODS, REASON_OBSERVE_ONLY, REASON_POLICY_CONFLICT, REASON_SCALED_TO_ZERO, REASON_SCRAPE_FAILED,
  REASON_SCALE_DOWN_LIMIT, REASON_SCALE_UP_LIMIT, REASON_TARGET_NOT_FOUND, REASON_TOO_FEW, REASON_TOO_MANY, REASON_VALID_METRIC,
  REASON_WITHIN_RANGE, type CapacityStatus, type Condition, type PolicySpec, type PolicyStatus, type ScalingRatePolicy, type TargetKind,
} from "../api/types.js";
import type { ScaleDecision } from "../scale/decide.js";
import type { EventSink, ObjectRef, WaitingContainer } from "./cluster.js";
import type { ConditionUpdate } from "./conditions.js";
import type { PodSamples } from "./pod-samples.js";

/** What a reconcile found and decided, before it is written. */
export interface Assessment {
  status: PolicyStatus;
  conditions: ConditionUpdate[];
}

export type ScalingOutcome =
  | { mode: "observe"; current: number }
  | { mode: "hpaConflict"; current: number; hpa: string }
  | { mode: "policyConflict"; current: number; policy: string }
  | { mode: "scaledToZero"; current: number }
  | { mode: "noMetric"; current: number }
  | { mode: "active"; current: number; decision: ScaleDecision; kind: TargetKind; scaledAt: string | undefined; scaleError?: string };

/** Most pods named in one condition message; the rest are counted. */
const MAX_NAMED_PODS = 10;

function targetName(spec: PolicySpec): string {
  return `${spec.targetRef.kind} ${spec.targetRef.name}`;
}

function namedList(items: readonly string[]): string {
  const shown = items.slice(0, MAX_NAMED_PODS).join(", ");
  return items.length > MAX_NAMED_PODS ? `${shown} and ${items.length - MAX_NAMED_PODS} more` : shown;
}

/** Metered: every pod of the target answered (True), or which did not and why (False). */
/** A pod of the target whose containers wait on something a user must fix. */
export interface PodStartProblem {
  pod: string;
  namespace: string;
  waiting: readonly WaitingContainer[];
}

/**
 * What keeps pods from starting, with the command that fixes each kind of problem: a missing
 * Secret (connmeter's admin token above all), an image that cannot be pulled, a crash loop.
 */
export function describeStartProblems(problems: readonly PodStartProblem[]): string {
  const named = namedList(problems.map((p) => `${p.pod} (${p.waiting.map((w) => `${w.container}: ${w.reason}${w.message ? `: ${w.message}` : ""}`).join("; ")})`));
  const all = problems.flatMap((p) => p.waiting.map((w) => ({ ...w, pod: p.pod, namespace: p.namespace })));
  const fixes = new Set<string>();
  for (const w of all) {
    if (w.reason === "CreateContainerConfigError" && w.message?.includes("connmeter-admin-token")) {
      fixes.add(`the sidecar's admin token Secret is missing in namespace ${w.namespace}: add the namespace to the chart's adminToken.namespaces (helm upgrade … --reuse-values), `
        + `or create it: kubectl -n ${w.namespace} create secret generic connmeter-admin-token --from-literal=token="$(head -c 32 /dev/urandom | base64)"; the pods then start by themselves`);
    } else if (w.reason === "CreateContainerConfigError") {
      fixes.add(`a Secret or ConfigMap the pod reads is missing: kubectl -n ${w.namespace} describe pod ${w.pod}`);
    } else if (["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"].includes(w.reason)) {
      fixes.add(`the image of container ${w.container} cannot be pulled: build the images (make images), push them to a registry the nodes pull from `
        + `(on kind: kind load docker-image <image>) and set that image in the pod template (kubectl -n ${w.namespace} describe pod ${w.pod} shows which)`);
    } else if (w.reason === "CrashLoopBackOff") {
      fixes.add(`container ${w.container} keeps crashing: kubectl -n ${w.namespace} logs ${w.pod} -c ${w.container} --previous`);
    } else {
      fixes.add(`kubectl -n ${w.namespace} describe pod ${w.pod}`);
    }
  }
  return `Pods that cannot start: ${named}. To fix: ${[...fixes].join("; ")}`;
}

export function assessMetering(spec: PolicySpec, targetFound: boolean, podCount: number, agg: Aggregate, samples: PodSamples, notStarting: readonly PodStartProblem[] = []): ConditionUpdate {
  const port = spec.sidecar.adminPort;
  if (!targetFound) {
    return {
      type: COND_METERED, status: "False", reason: REASON_TARGET_NOT_FOUND,
      message: `${targetName(spec)} was not found in the policy's namespace: create it or fix spec.targetRef`,
    };
  }
  if (podCount === 0 && notStarting.length > 0) {
    return { type: COND_METERED, status: "False", reason: REASON_PODS_NOT_STARTING, message: `${targetName(spec)} has no Running pod to scrape. ${describeStartProblems(notStarting)}` };
  }
  if (podCount === 0) {
    return { type: COND_METERED, status: "False", reason: REASON_NO_PODS, message: `${targetName(spec)} has no Running pod with an IP to scrape yet` };
  }
  if (agg.stalePods.length > 0) {
    const unknown = agg.unknownPods.length > 0
      ? `; ${agg.unknownPods.length} of them ${agg.unknownPods.length === 1 ? "has" : "have"} no usable counts, so the totals are a lower bound`
      : "";
    return {
      type: COND_METERED, status: "False", reason: REASON_SCRAPE_FAILED,
      message: `${agg.stalePods.length} of ${podCount} pods did not answer GET /stats on admin port ${port}: `
        + `${namedList(samples.failures(agg.stalePods))}. Their last known counts are used for at most 3 intervals${unknown}. `
        + "Check that the pod runs the connmeter sidecar with its admin port at spec.sidecar.adminPort"
        + (notStarting.length > 0 ? `. ${describeStartProblems(notStarting)}` : ""),
    };
  }
  return { type: COND_METERED, status: "True", reason: REASON_ALL_PODS_SCRAPED, message: `${podCount} of ${podCount} pods answered GET /stats` };
}

/**
 * LimitsApplied: every answering sidecar accepted its PUT /config (True), or which refused and
 * how to fix it (False). A pod that refuses keeps what it accepted last until the TTL, and its
 * share of the caps stays reserved for it meanwhile, so the caps still hold.
 */
export function assessLimits(spec: PolicySpec, namespace: string, pods: readonly { name: string }[], samples: PodSamples, olderPolicy: string | undefined, targetFound: boolean): ConditionUpdate {
  const c = (status: "True" | "False", reason: string, message: string): ConditionUpdate => ({ type: COND_LIMITS_APPLIED, status, reason, message });
  if (!targetFound) return c("False", REASON_TARGET_NOT_FOUND, `${targetName(spec)} was not found: nothing to configure`);
  if (olderPolicy !== undefined) return c("False", REASON_POLICY_CONFLICT, `ConnectionPolicy ${olderPolicy} is older and targets ${targetName(spec)} too: it alone pushes limits`);
  if (!pods.some((p) => samples.isFresh(p.name))) return c("False", REASON_NO_PODS, `no sidecar of ${targetName(spec)} answered this interval: nothing was pushed`);
  const failed = pods.map((p) => ({ ...p, error: samples.pushError(p.name) })).filter((p) => p.error !== undefined);
  if (failed.length === 0) return c("True", REASON_CONFIG_ACCEPTED, `every answering sidecar accepted its limits and budgets (PUT /config on admin port ${spec.sidecar.adminPort})`);
  const codes = new Set(failed.map((p) => p.error!.code));
  const ns = namespace;
  const fixes: string[] = [];
  if (codes.has("http_401")) {
    fixes.push(`401: the sidecar's CONNMETER_ADMIN_TOKEN differs from the one the operator sends (the key token of Secret connmeter-admin-token in namespace ${ns}, else the operator's own). `
      + `Make them equal (kubectl -n ${ns} get secret connmeter-admin-token), then restart the pods: kubectl -n ${ns} rollout restart ${spec.targetRef.kind.toLowerCase()}/${spec.targetRef.name}`);
  }
  if (codes.has("http_403")) {
    fixes.push(`403: the sidecar runs without CONNMETER_ADMIN_TOKEN, so it refuses every push: set it from Secret connmeter-admin-token (the chart's sidecar snippet does) and restart the pods`);
  }
  if ([...codes].some((code) => code !== "http_401" && code !== "http_403")) {
    fixes.push(`other errors: check that the operator reaches admin port ${spec.sidecar.adminPort} of the pods (NetworkPolicy, spec.sidecar.adminPort)`);
  }
  return c("False", REASON_CONFIG_PUSH_FAILED,
    `${failed.length} of ${pods.length} pods refused their limits and budgets (PUT /config): ${namedList(failed.map((p) => `${p.name} (${p.error!.code}: ${p.error!.message.slice(0, 200)})`))}. `
    + `Each keeps what it accepted last until it expires, and its share of the caps stays reserved. ${fixes.join("; ")}`);
}

/** AtCapacity, and the capacity in use when a cluster cap is set. */
export function assessCapacity(spec: PolicySpec, agg: Aggregate): { condition: ConditionUpdate; capacity: CapacityStatus | undefined } {
  const cap = spec.limits.maxConnections;
  const capacity = cap === undefined ? undefined : { maxConnections: cap, connections: agg.connections, usedPercent: Math.floor((100 * agg.connections) / cap) };
  const full = agg.topics.filter((t) => t.maxChannels !== undefined && t.channels >= t.maxChannels).map((t) => `${t.name} ${t.channels}/${t.maxChannels} channels`);
  if (capacity && capacity.connections >= capacity.maxConnections) full.unshift(`${capacity.connections}/${capacity.maxConnections} connections`);
  if (full.length > 0) {
    return {
      capacity,
      condition: {
        type: COND_AT_CAPACITY, status: "True", reason: REASON_AT_CAPACITY,
        message: `At the cluster cap: ${full.join("; ")}. Sidecars refuse new WebSocket upgrades (503) and joins (phx_reply {reason: "capacity"}) past their budgets`,
      },
    };
  }
  const hasCap = capacity !== undefined || spec.topics.some((t) => t.maxChannels !== undefined);
  return {
    capacity,
    condition: hasCap
      ? { type: COND_AT_CAPACITY, status: "False", reason: REASON_BELOW_CAPACITY, message: capacity ? `${capacity.connections}/${capacity.maxConnections} connections (${capacity.usedPercent}%)` : "every topic group is below its maxChannels" }
      : { type: COND_AT_CAPACITY, status: "False", reason: REASON_NO_CAP, message: "no cluster cap is set (spec.limits.maxConnections, spec.topics[].maxChannels)" },
  };
}

/** ScalingActive and ScalingLimited, after the HPA's meanings. */
export function assessScaling(spec: PolicySpec, outcome: ScalingOutcome | undefined): { active: ConditionUpdate; limited: ConditionUpdate } {
  const active = (status: "True" | "False", reason: string, message: string): ConditionUpdate => ({ type: COND_SCALING_ACTIVE, status, reason, message });
  const notLimited = (reason: string, message: string): ConditionUpdate => ({ type: COND_SCALING_LIMITED, status: "False", reason, message });
  if (!outcome) {
    const message = `${targetName(spec)} was not found: nothing to scale`;
    return { active: active("False", REASON_TARGET_NOT_FOUND, message), limited: notLimited(REASON_TARGET_NOT_FOUND, message) };
  }
  switch (outcome.mode) {
    case "observe":
      return {
        active: active("False", REASON_OBSERVE_ONLY, "spec.scaling is not set: connmeter meters and limits but does not scale"),
        limited: notLimited(REASON_OBSERVE_ONLY, "spec.scaling is not set"),
      };
    case "hpaConflict": {
      const message = `HorizontalPodAutoscaler ${outcome.hpa} also scales ${targetName(spec)}; connmeter does not fight it. Delete the HPA or remove spec.scaling`;
      return { active: active("False", REASON_HPA_CONFLICT, message), limited: notLimited(REASON_HPA_CONFLICT, message) };
    }
    case "policyConflict": {
      const message = `ConnectionPolicy ${outcome.policy} is older and targets ${targetName(spec)} too: it alone pushes limits and scales; this one only meters. Delete one of them`;
      return { active: active("False", REASON_POLICY_CONFLICT, message), limited: notLimited(REASON_POLICY_CONFLICT, message) };
    }
    case "scaledToZero": {
      const message = `${targetName(spec)} has 0 replicas; connmeter scales only from 1 up, so scaling is off until someone sets replicas ≥ 1`;
      return { active: active("False", REASON_SCALED_TO_ZERO, message), limited: notLimited(REASON_SCALED_TO_ZERO, message) };
    }
    case "noMetric": {
      const message = "no pod of the target has counts: scaling waits for the first answered scrape";
      return { active: active("False", REASON_NO_PODS, message), limited: notLimited(REASON_NO_PODS, message) };
    }
    case "active": {
      const s = spec.scaling!;
      const d = outcome.decision;
      const note = outcome.kind === "StatefulSet" ? " A StatefulSet removes its highest ordinal first on scale-down (pod-deletion-cost does not apply)." : "";
      const held = d.heldBack ? ` A scale-down to ${d.recommendation} is held back by the ${s.scaleDownStabilizationSeconds} s scale-down stabilization window.` : "";
      const isLimited = (reason: string, message: string) => ({ type: COND_SCALING_LIMITED, status: "True" as const, reason, message });
      const rate = (dir: "Up" | "Down", policies: readonly ScalingRatePolicy[], select: string) =>
        `the desired count (${d.recommendation}) ${dir === "Up" ? "rises" : "falls"} faster than spec.scaling.scale${dir}Policies allow ` +
        `(${policies.map((p) => `${p.value}${p.type === "Percent" ? " %" : " pods"} per ${p.periodSeconds} s`).join(", ")}, select ${select}): ${d.desired} replicas for now`;
      const limited = d.limited === "TooManyReplicas" ? isLimited(REASON_TOO_MANY, `the connections ask for more than maxReplicas ${s.maxReplicas}`)
        : d.limited === "TooFewReplicas" ? isLimited(REASON_TOO_FEW, `the connections ask for fewer than minReplicas ${s.minReplicas}`)
          : d.limited === "ScaleUpLimit" ? isLimited(REASON_SCALE_UP_LIMIT, rate("Up", s.scaleUpPolicies, s.scaleUpSelectPolicy))
            : d.limited === "ScaleDownLimit" ? isLimited(REASON_SCALE_DOWN_LIMIT, rate("Down", s.scaleDownPolicies, s.scaleDownSelectPolicy))
              : notLimited(REASON_WITHIN_RANGE, `the desired count is within [${s.minReplicas}, ${s.maxReplicas}]`);
      if (outcome.scaleError !== undefined) {
        return {
          active: active("False", REASON_FAILED_UPDATE_SCALE, `could not set ${targetName(spec)} to ${d.desired} replicas (retried every interval): ${outcome.scaleError}. Check the operator's RBAC for ${outcome.kind === "StatefulSet" ? "statefulsets" : "deployments"}/scale (patch) and pods (patch)`),
          limited,
        };
      }
      return {
        active: active("True", REASON_VALID_METRIC, `desired ${d.desired} replicas for a target of ${s.targetConnectionsPerPod} connections per pod.${held}${note}`),
        limited,
      };
    }
  }
}

/**
 * Ready, the one condition `kubectl get connpol` shows: True when the counts are current, the
 * limits reached every sidecar and scaling (if asked for) works; else False with the reason and
 * message of the first condition that is not, in the order a user must look at them.
 */
export function assessReady(conditions: readonly ConditionUpdate[]): ConditionUpdate {
  const find = (type: string) => conditions.find((c) => c.type === type);
  const metered = find(COND_METERED);
  const limits = find(COND_LIMITS_APPLIED);
  const scaling = find(COND_SCALING_ACTIVE);
  const scalingProblems = new Set([REASON_FAILED_UPDATE_SCALE, REASON_HPA_CONFLICT, REASON_POLICY_CONFLICT]);
  const injected = find(COND_INJECTED);
  const problem = [
    // Injection (issue 16): pods without the sidecar first; they also make Metered NoPods or partial.
    injected?.status === "False" ? injected : undefined,
    metered?.status === "False" ? metered : undefined,
    limits?.status === "False" && limits.reason === REASON_CONFIG_PUSH_FAILED ? limits : undefined,
    scaling?.status === "False" && scalingProblems.has(scaling.reason) ? scaling : undefined,
  ].find((c) => c !== undefined);
  if (problem) return { type: COND_READY, status: "False", reason: problem.reason, message: `${problem.type}: ${problem.message}` };
  return { type: COND_READY, status: "True", reason: REASON_METERED, message: metered?.message ?? "metered" };
}

/** Events on condition transitions (status or reason): the situations an operator must hear about once, not every interval. */
export function emitTransitionEvents(events: EventSink, ref: ObjectRef, before: readonly Condition[] | undefined, after: readonly Condition[]): void {
  const entered = (type: string, status: string, reason?: string): Condition | undefined => {
    const a = after.find((c) => c.type === type);
    const b = before?.find((c) => c.type === type);
    if (!a || a.status !== status || (reason !== undefined && a.reason !== reason)) return undefined;
    return b && b.status === a.status && b.reason === a.reason ? undefined : a;
  };
  const notFound = entered(COND_METERED, "False", REASON_TARGET_NOT_FOUND);
  if (notFound) events.record(ref, "Warning", EVENT_TARGET_NOT_FOUND, "Meter", notFound.message);
  const failed = entered(COND_METERED, "False", REASON_SCRAPE_FAILED);
  if (failed) events.record(ref, "Warning", EVENT_SCRAPE_FAILED, "Scrape", failed.message);
  const scaleFailed = entered(COND_SCALING_ACTIVE, "False", REASON_FAILED_UPDATE_SCALE);
  if (scaleFailed) events.record(ref, "Warning", EVENT_FAILED_SCALE, "Scale", scaleFailed.message);
  const refused = entered(COND_LIMITS_APPLIED, "False", REASON_CONFIG_PUSH_FAILED);
  if (refused) events.record(ref, "Warning", EVENT_CONFIG_PUSH_FAILED, "Configure", refused.message);
  const full = entered(COND_AT_CAPACITY, "True");
  if (full) events.record(ref, "Warning", EVENT_AT_CAPACITY, "Limit", full.message);
}

