// Every write the controller makes, each with the content type it needs. All PATCHes are JSON
// merge patches (RFC 7386), sent explicitly: client-node's generated patch calls default to JSON
// Patch, which rejects an object body ("cannot unmarshal object into … jsonPatchOp").
// Status and pod annotations are owned by the controller alone and recomputed whole each time,
// so last-writer-wins is what it wants (and `null` deletes a key). Writes that race other
// actors carry the resourceVersion they were decided from in metadata.resourceVersion, which
// the API server takes as a precondition (409 Conflict when the object changed since): the
// scale subresource (a `kubectl scale`, a GitOps tool), as the HPA does, finalizers (other
// tools add and remove theirs on the same list), and the rollout guard's pause of a Deployment
// (a user's `kubectl rollout resume` or `undo`).
import type { KubeConfig } from "@kubernetes/client-node";
import { MERGE_PATCH, apiStatusCode, kubeRequest, seg } from "./request.js";

export { KubeApiError, apiStatusCode } from "./request.js";

/** ConnectionPolicy's API coordinates (crds/). */
export const POLICY_GROUP = "connmeter.io";
export const POLICY_VERSION = "v1alpha1";
export const POLICY_PLURAL = "connectionpolicies";

/** Workload kinds with a scale subresource that the operator targets. */
export type ScaleTargetKind = "Deployment" | "StatefulSet";

/** The scale subresource as the controller needs it. */
export interface ScaleInfo {
  /** spec.replicas: what is asked for. */
  replicas: number;
  /** status.replicas: what exists now. */
  statusReplicas: number;
  /** status.selector: the pods' label selector as a string; undefined until the controller set it. */
  selector: string | undefined;
  resourceVersion: string;
}

/** Per-request bound, so a hung API server cannot wedge a reconcile forever. */
const REQUEST_TIMEOUT_MS = 30_000;

const policyPath = (ns: string, name: string) =>
  `/apis/${POLICY_GROUP}/${POLICY_VERSION}/namespaces/${seg(ns)}/${POLICY_PLURAL}/${seg(name)}`;
const scalePath = (kind: ScaleTargetKind, ns: string, name: string) =>
  `/apis/apps/v1/namespaces/${seg(ns)}/${kind === "Deployment" ? "deployments" : "statefulsets"}/${seg(name)}/scale`;

/**
 * Merge-patches a ConnectionPolicy's status through the /status subresource (the main resource
 * ignores status writes). Lists in `status` are replaced whole, which is what a recomputed
 * status wants. Throws KubeApiError (404 when the policy is gone).
 */
export async function patchPolicyStatus(kc: KubeConfig, namespace: string, name: string, status: object): Promise<void> {
  await kubeRequest(kc, {
    method: "PATCH", path: `${policyPath(namespace, name)}/status`, body: { status }, contentType: MERGE_PATCH,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/** Reads the target's scale subresource; undefined when the workload does not exist. */
export async function getScale(kc: KubeConfig, kind: ScaleTargetKind, namespace: string, name: string): Promise<ScaleInfo | undefined> {
  try {
    const scale = await kubeRequest<{
      metadata?: { resourceVersion?: string };
      spec?: { replicas?: number };
      status?: { replicas?: number; selector?: string };
    }>(kc, { method: "GET", path: scalePath(kind, namespace, name), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return {
      replicas: scale.spec?.replicas ?? 0,
      statusReplicas: scale.status?.replicas ?? 0,
      selector: scale.status?.selector || undefined,
      resourceVersion: scale.metadata?.resourceVersion ?? "",
    };
  } catch (err) {
    if (apiStatusCode(err) === 404) return undefined;
    throw err;
  }
}

/**
 * Sets spec.replicas through the scale subresource (never the workload object itself), only if
 * the workload's resourceVersion is still the one getScale returned. Throws KubeApiError 409
 * when it changed: read again and decide again.
 */
export async function patchScale(kc: KubeConfig, kind: ScaleTargetKind, namespace: string, name: string, replicas: number, resourceVersion: string): Promise<void> {
  if (!Number.isInteger(replicas) || replicas < 0) throw new RangeError(`replicas must be a non-negative integer, got ${replicas}`);
  if (!resourceVersion) throw new Error(`patchScale ${kind} ${namespace}/${name}: pass the resourceVersion of a getScale read (a write without one could undo a concurrent scale)`);
  await kubeRequest(kc, {
    method: "PATCH", path: scalePath(kind, namespace, name), body: { metadata: { resourceVersion }, spec: { replicas } }, contentType: MERGE_PATCH,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/**
 * Sets a ConnectionPolicy's metadata.finalizers to exactly `finalizers` (a merge patch replaces
 * the list), only if its resourceVersion is still `resourceVersion`: a finalizer another tool
 * added or removed since the read makes it fail with KubeApiError 409 instead of being undone.
 */
export async function patchPolicyFinalizers(kc: KubeConfig, namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void> {
  if (!resourceVersion) throw new Error(`patchPolicyFinalizers ${namespace}/${name}: pass the resourceVersion the finalizers were read at (a write without one could drop another tool's finalizer)`);
  await kubeRequest(kc, {
    method: "PATCH", path: policyPath(namespace, name), body: { metadata: { resourceVersion, finalizers } }, contentType: MERGE_PATCH,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/**
 * Merge-patches a pod's annotations: a string sets one, null removes it, others are untouched
 * (e.g. controller.kubernetes.io/pod-deletion-cost before a scale-down).
 */
export async function patchPodAnnotations(kc: KubeConfig, namespace: string, name: string, annotations: Record<string, string | null>): Promise<void> {
  await kubeRequest(kc, {
    method: "PATCH", path: `/api/v1/namespaces/${seg(namespace)}/pods/${seg(name)}`, body: { metadata: { annotations } },
    contentType: MERGE_PATCH, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

const deploymentPath = (ns: string, name: string) => `/apis/apps/v1/namespaces/${seg(ns)}/deployments/${seg(name)}`;

/** Reads what the rollout guard decides a pause from; undefined when the Deployment does not exist. */
export async function getDeployment(kc: KubeConfig, namespace: string, name: string): Promise<{ paused: boolean; generation: number; resourceVersion: string } | undefined> {
  try {
    const d = await kubeRequest<{ metadata?: { resourceVersion?: string; generation?: number }; spec?: { paused?: boolean } }>(kc, {
      method: "GET", path: deploymentPath(namespace, name), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    return { paused: d.spec?.paused === true, generation: d.metadata?.generation ?? 0, resourceVersion: d.metadata?.resourceVersion ?? "" };
  } catch (err) {
    if (apiStatusCode(err) === 404) return undefined;
    throw err;
  }
}

/**
 * Pauses a Deployment: a merge patch of spec.paused: true and nothing else (the chart's
 * ValidatingAdmissionPolicy refuses any other change by the operator), only if its
 * resourceVersion is still the one read. Throws KubeApiError 409 when it changed: read again
 * and decide again.
 */
export async function pauseDeployment(kc: KubeConfig, namespace: string, name: string, resourceVersion: string): Promise<void> {
  if (!resourceVersion) throw new Error(`pauseDeployment ${namespace}/${name}: pass the resourceVersion of a getDeployment read (a write without one could pause over a user's resume or rollback)`);
  await kubeRequest(kc, {
    method: "PATCH", path: deploymentPath(namespace, name), body: { metadata: { resourceVersion }, spec: { paused: true } }, contentType: MERGE_PATCH,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}
