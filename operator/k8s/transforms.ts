// Cache transforms: what each informer keeps of an object, applied before it is cached
// (controller-runtime's cache TransformFunc / TransformStripManagedFields). The pod informer
// watches every pod of the cluster, most of which no policy selects: a decoded pod with its
// managedFields, container specs and statuses is about 15 KiB of heap, the fields the
// controller reads are a few hundred bytes. Each transform builds a fresh object from those
// fields only, so the decoded original (and every string in it) becomes garbage at once.
// JSON.parse gives every string value its own storage (no slices of the response text), so
// copying the references is enough; bench/informer-heap-bench.ts measures the result.
//
// The output types are tied to the controller's read interfaces (controller/cluster.ts) with
// `Exactly<…>`: adding a field to PodLike, WorkloadLike or HpaLike fails to compile here until
// the transform copies it, so a new read can never silently see `undefined` from the cache.
import type { ConnectionPolicy } from "../api/types.js";
import { DELETION_COST_ANNOTATION } from "../api/types.js";
import type { HpaLike, PodLike, WaitingContainer, WorkloadLike } from "../controller/cluster.js";
import type { LabelSelector } from "../controller/selector.js";
import type { Pod } from "../webhook/pod-spec.js";
import { hasSidecar } from "../webhook/sidecar-patch.js";

/** Every key of T (optional ones included) must be written, possibly as undefined. */
type Exactly<T> = { [K in keyof Required<T>]: T[K] | undefined };

type Meta = NonNullable<PodLike["metadata"]>;
/** Meta plus what the informer itself needs: resourceVersion (change detection). */
type CachedMeta = Exactly<Meta> & { resourceVersion: string | undefined };

interface RawMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  managedFields?: unknown;
}

interface RawObject {
  metadata?: RawMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** Annotations of other tools that can be large and that nothing here reads. */
const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/** Whether the operator reads this pod annotation: connmeter's own and the deletion cost. */
export function isOperatorAnnotation(key: string): boolean {
  if (key === DELETION_COST_ANNOTATION) return true;
  const slash = key.indexOf("/");
  if (slash < 0) return false;
  const prefix = key.slice(0, slash);
  return prefix === "connmeter.io" || prefix.endsWith(".connmeter.io");
}

function pickAnnotations(all: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!all) return undefined;
  let kept: Record<string, string> | undefined;
  for (const key of Object.keys(all)) {
    if (!isOperatorAnnotation(key)) continue;
    (kept ??= {})[key] = all[key]!;
  }
  return kept;
}

function trimMeta(m: RawMeta | undefined, annotations: (all: Record<string, string> | undefined) => Record<string, string> | undefined): CachedMeta {
  return {
    name: m?.name,
    namespace: m?.namespace,
    uid: m?.uid,
    resourceVersion: m?.resourceVersion,
    // Labels are kept whole: any of them may be what a workload's selector matches on.
    labels: m?.labels,
    annotations: annotations(m?.annotations),
    deletionTimestamp: m?.deletionTimestamp,
  };
}

type PodCondition = NonNullable<NonNullable<PodLike["status"]>["conditions"]>[number];
// Most pods are Ready True or False: share those two one-element lists instead of one per pod.
const READY_TRUE: readonly PodCondition[] = Object.freeze([Object.freeze({ type: "Ready", status: "True" })]);
const READY_FALSE: readonly PodCondition[] = Object.freeze([Object.freeze({ type: "Ready", status: "False" })]);

function readyOnly(conditions: unknown): PodCondition[] | undefined {
  if (!Array.isArray(conditions)) return undefined;
  const ready = (conditions as Array<{ type?: unknown; status?: unknown }>).find((c) => c?.type === "Ready");
  if (!ready || typeof ready.status !== "string") return undefined;
  if (ready.status === "True") return READY_TRUE as PodCondition[];
  if (ready.status === "False") return READY_FALSE as PodCondition[];
  return [{ type: "Ready", status: ready.status }];
}

/** Waiting reasons that are part of every start, not a problem. */
const ROUTINE_WAITING = new Set(["ContainerCreating", "PodInitializing"]);
/** Enough of a kubelet message to name the Secret or image; the rest is dropped. */
const MAX_WAITING_MESSAGE = 300;

/** The containers (init containers first) that wait for a reason worth telling a user, or undefined (most pods). */
function waitingContainers(s: Record<string, unknown> | undefined): WaitingContainer[] | undefined {
  let out: WaitingContainer[] | undefined;
  for (const list of [s?.initContainerStatuses, s?.containerStatuses]) {
    if (!Array.isArray(list)) continue;
    for (const c of list as Array<{ name?: unknown; state?: { waiting?: { reason?: unknown; message?: unknown } } }>) {
      const w = c?.state?.waiting;
      if (typeof w?.reason !== "string" || ROUTINE_WAITING.has(w.reason)) continue;
      const message = typeof w.message === "string" ? w.message.slice(0, MAX_WAITING_MESSAGE) : undefined;
      (out ??= []).push({ container: typeof c.name === "string" ? c.name : "?", reason: w.reason, ...(message ? { message } : {}) });
    }
  }
  return out;
}

/** A cached pod: PodLike's fields and nothing else (see PodLike in controller/cluster.ts). */
export type CachedPod = PodLike & { metadata: CachedMeta };

/**
 * Keeps of a Pod: metadata name, namespace, uid, resourceVersion, labels, deletionTimestamp,
 * connmeter's and the deletion-cost annotations; spec.nodeName; whether it runs connmeter's
 * sidecar (read from its containers); status.phase, podIP, the
 * Ready condition and the containers waiting for a reason worth telling (a missing Secret, an
 * image pull error, a crash loop; at most 300 characters of message each). Drops managedFields, containers, volumes, every other status field.
 */
export function trimPod(obj: unknown): CachedPod {
  const raw = (obj ?? {}) as RawObject;
  const spec: Exactly<NonNullable<PodLike["spec"]>> = {
    nodeName: raw.spec?.nodeName as string | undefined,
    hasSidecar: hasSidecar(raw.spec as Pod["spec"]),
  };
  const s = raw.status;
  const status: Exactly<NonNullable<PodLike["status"]>> = {
    phase: s?.phase as string | undefined,
    podIP: s?.podIP as string | undefined,
    conditions: readyOnly(s?.conditions),
    waiting: waitingContainers(s),
  };
  return { metadata: trimMeta(raw.metadata, pickAnnotations), spec, status } satisfies Exactly<PodLike>;
}

/** A cached Deployment or StatefulSet. */
export type CachedWorkload = WorkloadLike & { metadata: CachedMeta };

/**
 * Keeps of a Deployment or StatefulSet: metadata (no annotations), spec.replicas,
 * spec.selector and spec.paused (true only). Drops the pod template (the bulk), managedFields and status: replicas are
 * read through the scale subresource when they matter.
 */
export function trimWorkload(obj: unknown): CachedWorkload {
  const raw = (obj ?? {}) as RawObject;
  const spec: Exactly<NonNullable<WorkloadLike["spec"]>> = {
    replicas: raw.spec?.replicas as number | undefined,
    selector: raw.spec?.selector as LabelSelector | undefined,
    paused: raw.spec?.paused === true ? true : undefined,
  };
  return { metadata: trimMeta(raw.metadata, () => undefined), spec } satisfies Exactly<WorkloadLike>;
}

/** A cached HorizontalPodAutoscaler. */
export type CachedHpa = HpaLike & { metadata: CachedMeta };

/** Keeps of an HPA: metadata (no annotations) and spec.scaleTargetRef. */
export function trimHpa(obj: unknown): CachedHpa {
  const raw = (obj ?? {}) as RawObject;
  const ref = raw.spec?.scaleTargetRef as { apiVersion?: string; kind?: string; name?: string } | undefined;
  const spec: Exactly<NonNullable<HpaLike["spec"]>> = {
    scaleTargetRef: ref && { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name },
  };
  return { metadata: trimMeta(raw.metadata, () => undefined), spec } satisfies Exactly<HpaLike>;
}

/**
 * Keeps a ConnectionPolicy whole except metadata.managedFields and kubectl's last-applied
 * annotation: the controller reads its full spec and status, its finalizers and generation,
 * and there are few policies.
 */
export function trimPolicy(obj: unknown): ConnectionPolicy {
  const raw = (obj ?? {}) as RawObject & ConnectionPolicy;
  const meta: RawMeta = { ...raw.metadata };
  delete meta.managedFields;
  if (meta.annotations && LAST_APPLIED_ANNOTATION in meta.annotations) {
    const annotations = { ...meta.annotations };
    delete annotations[LAST_APPLIED_ANNOTATION];
    meta.annotations = annotations;
  }
  return { ...raw, metadata: meta as ConnectionPolicy["metadata"] };
}
