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
  spec?: { nodeName?: string };
  status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[]; waiting?: WaitingContainer[] };
}

/** The fields of a Deployment or StatefulSet the controller reads. */
export interface WorkloadLike {
  metadata?: Meta;
  spec?: { replicas?: number; selector?: LabelSelector };
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

/** Every write the controller makes. */
export interface ClusterWriter {
  /** Merge-patches the policy's /status subresource. */
  patchPolicyStatus(namespace: string, name: string, status: PolicyStatus | Record<string, unknown>): Promise<void>;
  /** Merge-patches spec.replicas through the target's /scale subresource. */
  patchScale(kind: TargetKind, namespace: string, name: string, replicas: number): Promise<void>;
  /** Merge-patches a pod's annotations (null removes one). */
  patchPodAnnotations(namespace: string, name: string, annotations: Record<string, string | null>): Promise<void>;
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
