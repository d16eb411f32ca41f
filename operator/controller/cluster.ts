// What the controller needs from the cluster, as narrow interfaces: the informer caches
// (operator/k8s) and the writes it makes. The controller never imports client-node, so its
// logic is tested against these with plain objects.
import type { ConnectionPolicy, PolicyStatus, TargetKind } from "../api/types.js";
import type { LabelSelector } from "./selector.js";

/** A read-only informer cache. */
export interface Lister<T> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}

interface Meta {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: Date | string;
  resourceVersion?: string;
}

/** A container of a pod that waits for a reason other than being created (a missing Secret, an image that cannot be pulled, a crash loop). */
export interface WaitingContainer {
  container: string;
  reason: string;
  message?: string;
}

/** The fields of a Pod the controller reads. */
export interface PodLike {
  metadata?: Meta;
  /** hasSidecar (injection, issue 16): whether a container is connmeter's sidecar; undefined = not known (treated as present). */
  spec?: { nodeName?: string; hasSidecar?: boolean };
  status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[]; waiting?: WaitingContainer[] };
}

/** The fields of a Deployment or StatefulSet the controller reads. */
export interface WorkloadLike {
  metadata?: Meta;
  /** paused: a Deployment's spec.paused (the rollout guard tells a user's resume from its own pause). */
  spec?: { replicas?: number; selector?: LabelSelector; paused?: boolean };
}

/** A Deployment as the rollout guard reads it right before it pauses it (a GET, not the cache). */
export interface DeploymentPauseRead {
  paused: boolean;
  /** metadata.generation: it changes with every spec change (a new template, a rollback, a scale, a pause). */
  generation: number;
  /** The precondition of a pause decided from this read. */
  resourceVersion: string;
}

/** The fields of a HorizontalPodAutoscaler the controller reads. */
export interface HpaLike {
  metadata?: Meta;
  spec?: { scaleTargetRef?: { apiVersion?: string; kind?: string; name?: string } };
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
}

/** The scale subresource as the controller reads it (api-writes.ts ScaleInfo has these fields and more). */
export interface ScaleLike {
  /** spec.replicas: what is asked for now. */
  replicas: number;
  /** The workload's resourceVersion, the precondition of a write decided from this read. */
  resourceVersion: string;
}

/** Every read-modify-write and write the controller makes. */
export interface ClusterWriter {
  /** Merge-patches the policy's /status subresource. */
  patchPolicyStatus(namespace: string, name: string, status: PolicyStatus | Record<string, unknown>): Promise<void>;
  /**
   * Sets the policy's metadata.finalizers to exactly `finalizers`, only if the policy's
   * resourceVersion is still `resourceVersion` (else a 409 Conflict is thrown): a finalizer
   * another tool added since the read is never dropped.
   */
  patchPolicyFinalizers(namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void>;
  /** Reads the target's /scale subresource; undefined when the workload does not exist. */
  getScale(kind: TargetKind, namespace: string, name: string): Promise<ScaleLike | undefined>;
  /**
   * Sets spec.replicas through the target's /scale subresource, only if the workload's
   * resourceVersion is still `resourceVersion` (else a 409 Conflict is thrown), as the HPA does.
   */
  patchScale(kind: TargetKind, namespace: string, name: string, replicas: number, resourceVersion: string): Promise<void>;
  /** Merge-patches a pod's annotations (null removes one). */
  patchPodAnnotations(namespace: string, name: string, annotations: Record<string, string | null>): Promise<void>;
  /** Reads a Deployment (GET); undefined when it does not exist. */
  getDeployment(namespace: string, name: string): Promise<DeploymentPauseRead | undefined>;
  /**
   * Sets spec.paused: true on a Deployment and nothing else, only if its resourceVersion is
   * still `resourceVersion` (else a 409 Conflict is thrown). connmeter never resumes.
   */
  pauseDeployment(namespace: string, name: string, resourceVersion: string): Promise<void>;
}

/**
 * The HTTP status of a failed write: KubeApiError's `statusCode` (operator/k8s) or client-node's
 * numeric `code`, read by shape so this folder needs no client import; undefined for network
 * errors and aborts.
 */
export function writeErrorStatus(err: unknown): number | undefined {
  if (!err || typeof err !== "object") return undefined;
  const e = err as { statusCode?: unknown; code?: unknown };
  if (typeof e.statusCode === "number") return e.statusCode;
  if (typeof e.code === "number" && e.code >= 100 && e.code < 600) return e.code;
  return undefined;
}

/** A 409: the object changed since it was read (a resourceVersion precondition failed). Read again and decide again. */
export function isConflict(err: unknown): boolean {
  return writeErrorStatus(err) === 409;
}

/**
 * A write the API server refused for a reason a retry cannot fix: 400 BadRequest, 403
 * Forbidden (RBAC), 422 Invalid (schema or CEL). Retried at the policy's interval, not hot.
 */
export function isTerminalWriteError(err: unknown): boolean {
  const status = writeErrorStatus(err);
  return status === 400 || status === 403 || status === 422;
}

export interface EventSink {
  record(regarding: ObjectRef, type: "Normal" | "Warning", reason: string, action: string, note: string): void;
}

export interface Caches {
  policies: Lister<ConnectionPolicy>;
  pods: Lister<PodLike>;
  deployments: Lister<WorkloadLike>;
  statefulSets: Lister<WorkloadLike>;
  hpas: Lister<HpaLike>;
}
