// An in-memory cluster for the controller's tests: listers over arrays, a writer that applies
// its writes as the API server would (resourceVersion preconditions answered with 409, a
// deleting object removed once its last finalizer goes), watch sources that deliver each change
// in a later macrotask as an informer would, sidecars whose /stats can be held by a gate, and a
// clock the test advances.
import type { SidecarSample } from "../../../../operator/aggregate/aggregate.js";
import { OperatorMetrics } from "../../../../operator/admin/metrics.js";
import type { ConnectionPolicy, PolicyStatus, TargetKind } from "../../../../operator/api/types.js";
import type { ClusterWriter, EventSink, HpaLike, Lister, ObjectRef, PodLike, WorkloadLike } from "../../../../operator/controller/cluster.js";
import type { Watchable } from "../../../../operator/controller/controller.js";
import { Reconciler } from "../../../../operator/controller/reconciler.js";
import { SidecarError, type SidecarConfig } from "../../../../operator/scrape/sidecar-client.js";

export const NS = "shop";
export const INTERVAL_MS = 5000;
export const T0 = Date.parse("2026-03-01T12:00:00Z");
export const OTHER_FINALIZER = "argocd.argoproj.io/resources-finalizer";

interface Named { metadata?: { name?: string; namespace?: string } }

export class ArrayLister<T extends Named> implements Lister<T> {
  constructor(readonly items: T[] = []) {}
  get(namespace: string, name: string): T | undefined {
    return this.items.find((o) => o.metadata?.namespace === namespace && o.metadata.name === name);
  }
  list(namespace?: string): T[] {
    return this.items.filter((o) => namespace === undefined || o.metadata?.namespace === namespace);
  }
}

type Handler<T> = (type: "add" | "update" | "delete", obj: T) => void;

/** A watch: changes reach subscribers in a later macrotask, as from an informer's socket. */
export class FakeSource<T> implements Watchable<T> {
  private handlers: Handler<T>[] = [];
  onChange(handler: Handler<T>): () => void {
    this.handlers.push(handler);
    return () => { this.handlers = this.handlers.filter((h) => h !== handler); };
  }
  emit(type: "add" | "update" | "delete", obj: T): void {
    setImmediate(() => { for (const h of this.handlers) h(type, obj); });
  }
}

/** An API error as operator/k8s throws it (statusCode read by shape). */
export class FakeApiError extends Error {
  constructor(readonly statusCode: number, message: string) { super(`${statusCode}: ${message}`); }
}

export type Write =
  | { op: "status"; name: string; status: Record<string, unknown> }
  | { op: "finalizers"; name: string; finalizers: string[]; resourceVersion: string; outcome: "ok" | "conflict" }
  | { op: "getScale"; name: string }
  | { op: "scale"; kind: TargetKind; name: string; replicas: number; resourceVersion: string; outcome: "ok" | "conflict" }
  | { op: "annotate"; pod: string; annotations: Record<string, string | null> };

export function pod(name: string, ip: string, app = "chat"): PodLike {
  return {
    metadata: { name, namespace: NS, labels: { app }, annotations: {} },
    spec: { nodeName: "node-1" },
    status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: "True" }] },
  };
}

export const sample = (connections: number): SidecarSample => ({ connections, channels: 0, longpoll: 0, topics: {} });

export class FakeCluster {
  now = T0;
  private rv = 100;
  readonly caches = {
    policies: new ArrayLister<ConnectionPolicy>(),
    pods: new ArrayLister<PodLike>(),
    deployments: new ArrayLister<WorkloadLike>(),
    statefulSets: new ArrayLister<WorkloadLike>(),
    hpas: new ArrayLister<HpaLike>(),
  };
  readonly sources = { policies: new FakeSource<ConnectionPolicy>(), deployments: new FakeSource<WorkloadLike>(), statefulSets: new FakeSource<WorkloadLike>() };
  readonly writes: Write[] = [];
  readonly events: { reason: string; type: string; note: string; regarding: ObjectRef }[] = [];
  /** What each sidecar (by IP) answers: a sample, or an error to throw (default: refused). */
  readonly answers = new Map<string, SidecarSample | Error>();
  /** A sidecar whose /stats waits for this promise first. */
  readonly gates = new Map<string, Promise<void>>();
  /** What DELETE /config of each sidecar (by IP) throws; absent: it succeeds. */
  readonly resetErrors = new Map<string, Error>();
  readonly pushes: { ip: string; config: SidecarConfig }[] = [];
  readonly resets: string[] = [];
  readonly scrapes: string[] = [];
  readonly metrics = new OperatorMetrics();
  /** Runs right after a GET of a scale subresource returned: the place for a concurrent `kubectl scale`. */
  afterGetScale: (() => void) | undefined;
  readonly sink: EventSink = { record: (regarding, type, reason, _action, note) => this.events.push({ regarding, type, reason, note }) };

  readonly writer: ClusterWriter = {
    patchPolicyStatus: async (ns, name, patch) => {
      this.writes.push({ op: "status", name, status: structuredClone(patch) as Record<string, unknown> });
      const current = this.mustPolicy(ns, name);
      const merged: Record<string, unknown> = { ...(current.status ?? {}) };
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete merged[k];
        else merged[k] = structuredClone(v);
      }
      this.replacePolicy({ ...structuredClone(current), status: merged as PolicyStatus });
    },
    patchPolicyFinalizers: async (ns, name, finalizers, resourceVersion) => {
      const current = this.mustPolicy(ns, name);
      const conflict = current.metadata.resourceVersion !== resourceVersion;
      this.writes.push({ op: "finalizers", name, finalizers: [...finalizers], resourceVersion, outcome: conflict ? "conflict" : "ok" });
      if (conflict) throw new FakeApiError(409, `Operation cannot be fulfilled on connectionpolicies.connmeter.io "${name}": the object has been modified`);
      const next = structuredClone(current);
      next.metadata.finalizers = [...finalizers];
      if (next.metadata.deletionTimestamp && finalizers.length === 0) this.removePolicy(next);
      else this.replacePolicy(next);
    },
    getScale: async (kind, ns, name) => {
      this.writes.push({ op: "getScale", name });
      const w = this.workload(kind, ns, name);
      const scale = w ? { replicas: w.spec?.replicas ?? 0, resourceVersion: w.metadata!.resourceVersion! } : undefined;
      this.afterGetScale?.();
      return scale;
    },
    patchScale: async (kind, ns, name, replicas, resourceVersion) => {
      const w = this.workload(kind, ns, name);
      if (!w) throw new FakeApiError(404, `${kind} ${name} not found`);
      const conflict = w.metadata!.resourceVersion !== resourceVersion;
      this.writes.push({ op: "scale", kind, name, replicas, resourceVersion, outcome: conflict ? "conflict" : "ok" });
      if (conflict) throw new FakeApiError(409, `Operation cannot be fulfilled on ${kind.toLowerCase()}s.apps "${name}": the object has been modified`);
      this.scaleTo(w, replicas);
    },
    patchPodAnnotations: async (ns, name, annotations) => {
      this.writes.push({ op: "annotate", pod: name, annotations });
      const p = this.caches.pods.get(ns, name);
      if (!p) throw new FakeApiError(404, `pods "${name}" not found`);
      const a = { ...(p.metadata!.annotations ?? {}) };
      for (const [k, v] of Object.entries(annotations)) {
        if (v === null) delete a[k];
        else a[k] = v;
      }
      p.metadata!.annotations = a;
    },
    getDeployment: async (ns, name) => {
      const w = this.workload("Deployment", ns, name);
      return w ? { paused: w.spec?.paused === true, generation: 1, resourceVersion: w.metadata!.resourceVersion! } : undefined;
    },
    pauseDeployment: async (ns, name, resourceVersion) => {
      const w = this.workload("Deployment", ns, name);
      if (!w) throw new FakeApiError(404, `Deployment ${name} not found`);
      if (w.metadata!.resourceVersion !== resourceVersion) throw new FakeApiError(409, `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified`);
      w.spec = { ...w.spec, paused: true };
    },
  };

  readonly sidecars = {
    stats: async (ip: string): Promise<SidecarSample> => {
      this.scrapes.push(ip);
      await this.gates.get(ip);
      const a = this.answers.get(ip) ?? new SidecarError("refused", `connect ECONNREFUSED ${ip}`);
      if (a instanceof Error) throw a;
      return structuredClone(a);
    },
    // Answers no revision, as a sidecar older than HeldConfig: every interval pushes.
    pushConfig: async (ip: string, _port: number, config: SidecarConfig): Promise<string | undefined> => {
      this.pushes.push({ ip, config: structuredClone(config) });
      return undefined;
    },
    resetConfig: async (ip: string): Promise<void> => {
      this.resets.push(ip);
      const err = this.resetErrors.get(ip);
      if (err) throw err;
    },
  };

  readonly logs: string[] = [];

  reconciler(): Reconciler {
    return new Reconciler({
      caches: this.caches, writer: this.writer, events: this.sink, sidecars: this.sidecars, metrics: this.metrics,
      clock: () => this.now, log: (line) => this.logs.push(line),
    });
  }

  /** A policy on Deployment `target`, as the API server returns it after create. */
  addPolicy(name: string, spec: Partial<ConnectionPolicy["spec"]> = {}, meta: Partial<ConnectionPolicy["metadata"]> = {}): ConnectionPolicy {
    const policy: ConnectionPolicy = {
      apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy",
      metadata: { name, namespace: NS, uid: `uid-${name}`, generation: 1, resourceVersion: this.nextRv(), creationTimestamp: new Date(T0).toISOString(), ...meta },
      spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: INTERVAL_MS / 1000, ...spec },
    };
    this.caches.policies.items.push(policy);
    return policy;
  }

  addDeployment(name: string, replicas: number, app = name): WorkloadLike {
    const d: WorkloadLike = { metadata: { name, namespace: NS, resourceVersion: this.nextRv() }, spec: { replicas, selector: { matchLabels: { app } } } };
    this.caches.deployments.items.push(d);
    return d;
  }

  policy(name: string): ConnectionPolicy | undefined {
    return this.caches.policies.get(NS, name);
  }

  /** `kubectl delete`: sets deletionTimestamp, or removes the object when it holds no finalizer. */
  deletePolicy(name: string): void {
    const current = this.mustPolicy(NS, name);
    if (!current.metadata.finalizers?.length) return this.removePolicy(current);
    const next = structuredClone(current);
    next.metadata.deletionTimestamp = new Date(this.now).toISOString();
    this.replacePolicy(next);
  }

  /** Another actor's write of spec.replicas (`kubectl scale`): a new resourceVersion. */
  scaleTo(w: WorkloadLike, replicas: number): void {
    w.spec!.replicas = replicas;
    w.metadata!.resourceVersion = this.nextRv();
  }

  ops<T extends Write["op"]>(op: T): Extract<Write, { op: T }>[] {
    return this.writes.filter((w): w is Extract<Write, { op: T }> => w.op === op);
  }

  private nextRv(): string {
    return String(++this.rv);
  }

  private workload(kind: TargetKind, ns: string, name: string): WorkloadLike | undefined {
    return (kind === "StatefulSet" ? this.caches.statefulSets : this.caches.deployments).get(ns, name);
  }

  private mustPolicy(ns: string, name: string): ConnectionPolicy {
    const p = this.caches.policies.get(ns, name);
    if (!p) throw new FakeApiError(404, `connectionpolicies.connmeter.io "${name}" not found`);
    return p;
  }

  /** As an informer: the cache gets a new object (the one a reconcile holds is not changed), and subscribers an update. */
  private replacePolicy(next: ConnectionPolicy): void {
    next.metadata.resourceVersion = this.nextRv();
    const items = this.caches.policies.items;
    items[items.findIndex((p) => p.metadata.name === next.metadata.name)] = next;
    this.sources.policies.emit("update", next);
  }

  private removePolicy(gone: ConnectionPolicy): void {
    const items = this.caches.policies.items;
    items.splice(items.findIndex((p) => p.metadata.name === gone.metadata.name), 1);
    this.sources.policies.emit("delete", gone);
  }
}
