// reconcile(namespace/name): read the world (the policy, its target, the target's pods, every
// metered pod's /stats), compute the desired state with pure functions (aggregate, budgets,
// scale decision, deletion costs, conditions), then write only what changed. Level-triggered:
// it never trusts an event's content, and running it twice in a row is harmless.
import { aggregate, type Aggregate } from "../aggregate/aggregate.js";
import { splitCap, type BudgetClaim } from "../aggregate/budgets.js";
import type { OperatorMetrics } from "../admin/metrics.js";
import {
  API_VERSION, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION, EVENT_SCALED_DOWN,
  EVENT_SCALED_UP, KIND, policyKey, withDefaults,
  type ConnectionPolicy, type PolicySpec, type PolicyStatus, type TargetKind,
} from "../api/types.js";
import { decideScale, type Recommendation, type ScaleEvent } from "../scale/decide.js";
import { deletionCosts } from "../scale/deletion-cost.js";
import type { SidecarClient, SidecarConfig, SidecarScope } from "../scrape/sidecar-client.js";
import type { Caches, ClusterWriter, EventSink, ObjectRef, PodLike, WorkloadLike } from "./cluster.js";
import { assessCapacity, assessMetering, assessScaling, emitTransitionEvents, type Assessment, type ScalingOutcome } from "./assess.js";
import { PodSamples, type ScrapeTarget } from "./pod-samples.js";
import { selectorMatches } from "./selector.js";
import { canonicalJson } from "./canonical-json.js";
import { setCondition } from "./conditions.js";

export interface ReconcilerDeps {
  caches: Caches;
  writer: ClusterWriter;
  events: EventSink;
  sidecars: Pick<SidecarClient, "stats" | "pushConfig" | "resetConfig">;
  metrics: OperatorMetrics;
  clock: () => number;
  log: (line: string) => void;
}

export interface ReconcileResult {
  /** Run again after this long (the next scrape, or the next allowed status write). */
  requeueAfterMs: number;
}

/** What the operator remembers of one policy between reconciles (lost on restart by design: all of it is re-learned in one interval). */
interface PolicyMemory {
  uid: string | undefined;
  /** The spec generation last acted on: a new one is acted on at once, not at the next interval. */
  generation: number | undefined;
  samples: PodSamples;
  lastScrapeMs: number;
  history: Recommendation[];
  /** The scales this replica made, for the rate policies (like the HPA's, kept in memory only). */
  scaleEvents: ScaleEvent[];
  lastStatusWriteMs: number;
  /** The canonical JSON of the last status written (or read), to write only changes. */
  lastStatusJson: string;
  /** Topic labels of the policy's channel gauge, to remove the ones that disappear. */
  topicLabels: string[];
  /** The last assessment, reused by reconciles between two scrapes. */
  assessment: Assessment | undefined;
  /** The sidecars' admin port, to lift budgets after the policy is gone from the cache. */
  adminPort: number;
  /** Set by forget(): a reconcile still running for the old policy writes nothing more. */
  forgotten: boolean;
}

/** A scrape's timeout: well under the interval, never long. */
export function scrapeTimeoutMs(intervalMs: number): number {
  return Math.min(2000, Math.max(250, Math.floor(intervalMs / 3)));
}

export class Reconciler {
  private readonly memory = new Map<string, PolicyMemory>();

  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = splitKey(key);
    const policy = this.deps.caches.policies.get(namespace, name);
    if (!policy || policy.metadata.deletionTimestamp) {
      await this.forget(key, policy);
      return { requeueAfterMs: 0 };
    }
    const spec = withDefaults(policy.spec);
    const intervalMs = spec.scrapeIntervalSeconds * 1000;
    const now = this.deps.clock();
    const mem = this.memoryFor(key, policy);
    mem.adminPort = spec.sidecar.adminPort;
    const target = this.target(namespace, spec);

    const scrapeDue = now - mem.lastScrapeMs >= intervalMs - 100 || mem.generation !== policy.metadata.generation;
    if (scrapeDue || !mem.assessment) {
      mem.generation = policy.metadata.generation;
      const pods = target ? this.scrapeTargets(namespace, target) : [];
      await mem.samples.scrape(pods, (t) => this.fetchStats(t, spec, intervalMs, { namespace, policy: key }), now);
      mem.lastScrapeMs = now;
      const agg = aggregate(mem.samples.observations(pods, now, intervalMs), spec.topics);
      // Two policies on one workload would push budgets and scale against each other: the older acts, the other meters.
      const older = target ? this.olderPolicyOnTarget(policy, spec) : undefined;
      if (target && !older) await this.pushBudgets(policy, spec, pods, agg, mem, intervalMs);
      const scaling = !target ? undefined
        : older ? { mode: "policyConflict" as const, current: target.spec?.replicas ?? 1, policy: older }
          : await this.ensureScale(policy, spec, target, pods, agg, mem, now);
      mem.assessment = this.assess(policy, spec, target, pods, agg, scaling, mem);
    }
    await this.ensureStatus(policy, mem, now, intervalMs);
    return { requeueAfterMs: Math.max(0, mem.lastScrapeMs + intervalMs - this.deps.clock()) };
  }

  /** The policy is gone: lift its budgets at once (the TTL would, later) and drop what is remembered. */
  async forget(key: string, last?: ConnectionPolicy): Promise<void> {
    const mem = this.memory.get(key);
    if (!mem) return;
    this.memory.delete(key);
    mem.forgotten = true;
    const [namespace, name] = splitKey(key);
    this.deps.metrics.forgetPolicy(namespace, name, mem.topicLabels);
    const port = last ? withDefaults(last.spec).sidecar.adminPort : mem.adminPort;
    await Promise.all(mem.samples.pushedPods().map(async (p) => {
      try {
        await this.deps.sidecars.resetConfig(p.ip, port, 2000, { namespace, policy: key });
      } catch (err) {
        this.deps.metrics.configPushFailures.inc();
        this.deps.log(`policy ${key} deleted: could not lift the budgets of pod ${p.name} (${(err as Error).message}); they expire with their TTL`);
      }
    }));
    await this.removeDeletionCosts(namespace, name);
  }

  private memoryFor(key: string, policy: ConnectionPolicy): PolicyMemory {
    let mem = this.memory.get(key);
    if (!mem || mem.uid !== policy.metadata.uid) {
      mem = {
        uid: policy.metadata.uid, generation: undefined, samples: new PodSamples(), lastScrapeMs: -Infinity, history: [], scaleEvents: [],
        lastStatusWriteMs: -Infinity, lastStatusJson: canonicalJson(policy.status ?? {}), topicLabels: [], assessment: undefined,
        adminPort: 0, forgotten: false,
      };
      this.memory.set(key, mem);
    }
    return mem;
  }

  /** The name of an older policy (by creation, then name) with the same target, if any. */
  private olderPolicyOnTarget(policy: ConnectionPolicy, spec: PolicySpec): string | undefined {
    const rank = (p: ConnectionPolicy) => `${new Date(p.metadata.creationTimestamp ?? 0).toISOString()}/${p.metadata.name}`;
    const mine = rank(policy);
    return this.deps.caches.policies.list(policy.metadata.namespace)
      .filter((p) => p.metadata.name !== policy.metadata.name && !p.metadata.deletionTimestamp
        && p.spec.targetRef.kind === spec.targetRef.kind && p.spec.targetRef.name === spec.targetRef.name && rank(p) < mine)
      .map((p) => p.metadata.name)
      .sort()[0];
  }

  private target(namespace: string, spec: PolicySpec): WorkloadLike | undefined {
    const { kind, name } = spec.targetRef;
    const lister = kind === "StatefulSet" ? this.deps.caches.statefulSets : this.deps.caches.deployments;
    return lister.get(namespace, name);
  }

  /** The target's Running pods with an IP: the ones whose sidecar can answer. */
  private scrapeTargets(namespace: string, target: WorkloadLike): ScrapeTarget[] {
    const out: ScrapeTarget[] = [];
    for (const p of this.deps.caches.pods.list(namespace)) {
      if (!selectorMatches(target.spec?.selector, p.metadata?.labels)) continue;
      if (p.status?.phase !== "Running" || !p.status.podIP || !p.metadata?.name) continue;
      out.push({ name: p.metadata.name, ip: p.status.podIP, node: p.spec?.nodeName, ready: isReady(p) });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  private async fetchStats(t: ScrapeTarget, spec: PolicySpec, intervalMs: number, scope: SidecarScope) {
    const end = this.deps.metrics.scrapeDuration.startTimer();
    try {
      return await this.deps.sidecars.stats(t.ip, spec.sidecar.adminPort, scrapeTimeoutMs(intervalMs), scope);
    } catch (err) {
      this.deps.metrics.scrapeFailures.inc({ code: (err as { code?: string }).code ?? "error" });
      throw err;
    } finally {
      end();
    }
  }

  /**
   * Pushes every answering sidecar its config: the pod cap and readiness threshold from the
   * spec, its share of the cluster cap and of each group's cap, and a TTL of 3 intervals. A
   * field the spec no longer sets is lifted by resetting the sidecar to its flags first.
   */
  private async pushBudgets(policy: ConnectionPolicy, spec: PolicySpec, pods: ScrapeTarget[], agg: Aggregate, mem: PolicyMemory, intervalMs: number): Promise<void> {
    const { limits } = spec;
    const claimsOf = (used: (name: string) => number, reservedOf: (pushed: SidecarConfig) => number | undefined): BudgetClaim[] =>
      pods.map((p) => {
        const pushed = mem.samples.pushed(p.name);
        const reserved = mem.samples.isFresh(p.name) ? undefined : pushed ? reservedOf(pushed) ?? used(p.name) : used(p.name);
        return reserved === undefined ? { name: p.name, used: used(p.name) } : { name: p.name, used: used(p.name), reserved };
      });
    const connectionBudgets = limits.maxConnections === undefined ? undefined : splitCap(
      limits.maxConnections,
      claimsOf((n) => agg.podConnections.get(n) ?? 0, (c) => c.connectionBudget ?? undefined),
      limits.maxConnectionsPerPod ?? Infinity,
    );
    const groupBudgets = spec.topics.map((g, i) => g.maxChannels === undefined ? undefined : splitCap(
      g.maxChannels,
      // By name, not position: a reordered spec.topics must not charge a stale pod another group's budget.
      claimsOf((n) => agg.podGroupChannels.get(n)?.[i] ?? 0, (c) => c.topics?.find((t) => t.match === g.match)?.maxChannels),
    ));
    const ttlSeconds = Math.max(3, Math.ceil((3 * intervalMs) / 1000));
    if (mem.forgotten) return;
    await Promise.all(pods.filter((p) => mem.samples.isFresh(p.name)).map(async (p) => {
      const config: SidecarConfig = {
        ...(limits.maxConnectionsPerPod !== undefined ? { maxConnections: limits.maxConnectionsPerPod } : {}),
        ...(limits.rejectAtPercent !== undefined ? { rejectAtPercent: limits.rejectAtPercent } : {}),
        connectionBudget: connectionBudgets?.get(p.name) ?? null,
        // No groups in the spec: the sidecar keeps its own (--topic-group), not an empty list.
        ...(spec.topics.length === 0 ? {} : {
          topics: spec.topics.map((g, i) => {
            const budget = groupBudgets[i]?.get(p.name);
            return budget === undefined ? { match: g.match } : { match: g.match, maxChannels: budget };
          }),
        }),
        ttlSeconds,
      };
      const before = mem.samples.pushed(p.name);
      try {
        const scope = { namespace: policy.metadata.namespace, policy: policyKey(policy.metadata.namespace, policy.metadata.name) };
        if (before && liftsAField(before, config)) await this.deps.sidecars.resetConfig(p.ip, spec.sidecar.adminPort, scrapeTimeoutMs(intervalMs), scope);
        await this.deps.sidecars.pushConfig(p.ip, spec.sidecar.adminPort, config, scrapeTimeoutMs(intervalMs), scope);
        mem.samples.setPushed(p.name, config);
      } catch (err) {
        this.deps.metrics.configPushFailures.inc();
        this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: PUT /config to pod ${p.name} failed: ${(err as Error).message}`);
      }
    }));
  }

  /** Decides the replicas and, when they change, writes deletion costs (scale-down) and the scale. */
  private async ensureScale(policy: ConnectionPolicy, spec: PolicySpec, target: WorkloadLike, pods: ScrapeTarget[], agg: Aggregate, mem: PolicyMemory, now: number): Promise<ScalingOutcome> {
    const current = target.spec?.replicas ?? 1;
    const scaling = spec.scaling;
    if (!scaling) return { mode: "observe", current };
    const { kind, name } = spec.targetRef;
    const hpa = this.deps.caches.hpas.list(policy.metadata.namespace)
      .find((h) => h.spec?.scaleTargetRef?.kind === kind && h.spec.scaleTargetRef.name === name);
    if (hpa) return { mode: "hpaConflict", current, hpa: hpa.metadata?.name ?? "?" };
    if (current === 0) return { mode: "scaledToZero", current };
    if (pods.length === 0 || agg.unknownPods.length === pods.length) return { mode: "noMetric", current };
    // A policy new to this replica (or a new leader) starts its history at the current count, so
    // a restart never skips the scale-down window.
    if (mem.history.length === 0) mem.history.push({ atMs: now, replicas: current });
    const decision = decideScale({
      nowMs: now, current, connections: agg.connections, incomplete: agg.stalePods.length > 0, spec: scaling,
      history: mem.history, events: mem.scaleEvents,
    });
    mem.history = decision.history;
    mem.scaleEvents = decision.events;
    let scaledAt: string | undefined;
    if (decision.desired !== current && !mem.forgotten) {
      // A failed write is reported in ScalingActive and retried next interval; it must not stop
      // the status (and so `kubectl get connpol`) from following the counts.
      try {
        if (decision.desired < current && kind === "Deployment" && scaling.connectionAwareScaleDown) {
          await this.ensureDeletionCosts(policy, target, agg);
        }
        await this.deps.writer.patchScale(kind, policy.metadata.namespace, name, decision.desired);
      } catch (err) {
        const scaleError = (err as Error).message;
        this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: scaling ${kind} ${name} ${current} -> ${decision.desired} failed: ${scaleError}`);
        return { mode: "active", current, decision, kind: kind as TargetKind, scaledAt: undefined, scaleError };
      }
      mem.scaleEvents.push({ atMs: now, change: decision.desired - current });
      const up = decision.desired > current;
      this.deps.metrics.scaleActions.inc({ direction: up ? "up" : "down" });
      this.deps.events.record(policyRef(policy), "Normal", up ? EVENT_SCALED_UP : EVENT_SCALED_DOWN, "Scale",
        `Scaled ${kind} ${name} from ${current} to ${decision.desired} replicas: ${agg.connections} connections, target ${scaling.targetConnectionsPerPod} per pod`);
      this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: scaled ${kind} ${name} ${current} -> ${decision.desired} (${agg.connections} connections)`);
      scaledAt = new Date(now).toISOString();
    }
    return { mode: "active", current, decision, kind: kind as TargetKind, scaledAt };
  }

  /**
   * Just before a Deployment's replicas drop: each pod's deletion cost is its connection count,
   * so the ReplicaSet removes the emptiest pods first. Only changed values are written, and
   * each is marked as connmeter's so it can be removed when the policy goes.
   */
  private async ensureDeletionCosts(policy: ConnectionPolicy, target: WorkloadLike, agg: Aggregate): Promise<void> {
    const pods = this.deps.caches.pods.list(policy.metadata.namespace)
      .filter((p) => selectorMatches(target.spec?.selector, p.metadata?.labels) && p.metadata?.name && !p.metadata.deletionTimestamp);
    const writes = deletionCosts(pods.map((p) => ({
      name: p.metadata!.name!,
      connections: agg.podConnections.get(p.metadata!.name!),
      current: p.metadata?.annotations?.[DELETION_COST_ANNOTATION],
    })));
    await Promise.all([...writes].map(([pod, cost]) => this.deps.writer.patchPodAnnotations(policy.metadata.namespace, pod, {
      [DELETION_COST_ANNOTATION]: cost, [DELETION_COST_OWNER_ANNOTATION]: policy.metadata.name,
    })));
  }

  /** Removes the deletion costs this policy wrote (best effort: the policy is gone). */
  private async removeDeletionCosts(namespace: string, policy: string): Promise<void> {
    const ours = this.deps.caches.pods.list(namespace).filter((p) => p.metadata?.annotations?.[DELETION_COST_OWNER_ANNOTATION] === policy);
    await Promise.all(ours.map(async (p) => {
      try {
        await this.deps.writer.patchPodAnnotations(namespace, p.metadata!.name!, { [DELETION_COST_ANNOTATION]: null, [DELETION_COST_OWNER_ANNOTATION]: null });
      } catch (err) {
        this.deps.log(`policy ${namespace}/${policy} deleted: could not remove the deletion cost of pod ${p.metadata?.name}: ${(err as Error).message}`);
      }
    }));
  }

  private assess(policy: ConnectionPolicy, spec: PolicySpec, target: WorkloadLike | undefined, pods: ScrapeTarget[], agg: Aggregate, scaling: ScalingOutcome | undefined, mem: PolicyMemory): Assessment {
    const metering = assessMetering(spec, target !== undefined, pods.length, agg, mem.samples);
    const capacity = assessCapacity(spec, agg);
    const scaled = assessScaling(spec, scaling);
    const replicas = scaling?.current ?? target?.spec?.replicas ?? 0;
    const desired = scaling?.mode === "active" ? scaling.decision.desired : replicas;
    const status: PolicyStatus = {
      connections: agg.connections, channels: agg.channels, longpoll: agg.longpoll,
      replicas, desiredReplicas: desired, meteredPods: agg.meteredPods, stalePods: agg.stalePods.length,
      topics: agg.topics, pods: agg.pods, nodes: agg.nodes,
      ...(capacity.capacity ? { capacity: capacity.capacity } : {}),
      lastScaleTime: scaling?.mode === "active" && scaling.scaledAt ? scaling.scaledAt : policy.status?.lastScaleTime,
    };
    this.updateGauges(policy, agg, replicas, desired, spec, mem);
    return { status, conditions: [metering, scaled.active, scaled.limited, capacity.condition] };
  }

  private updateGauges(policy: ConnectionPolicy, agg: Aggregate, replicas: number, desired: number, spec: PolicySpec, mem: PolicyMemory): void {
    const m = this.deps.metrics;
    const labels = { namespace: policy.metadata.namespace, policy: policy.metadata.name };
    m.policyConnections.set(labels, agg.connections);
    m.policyReplicas.set(labels, replicas);
    m.policyDesiredReplicas.set(labels, desired);
    const setOrRemove = (g: typeof m.policyMaxConnections, v: number | undefined) => (v === undefined ? g.remove(labels) : g.set(labels, v));
    setOrRemove(m.policyMaxConnections, spec.limits.maxConnections);
    setOrRemove(m.policyMaxReplicas, spec.scaling?.maxReplicas);
    m.policyPods.set({ ...labels, state: "metered" }, agg.meteredPods);
    m.policyPods.set({ ...labels, state: "stale" }, agg.stalePods.length);
    const topics = agg.topics.map((t) => t.name);
    for (const gone of mem.topicLabels.filter((t) => !topics.includes(t))) m.policyChannels.remove({ ...labels, topic: gone });
    for (const t of agg.topics) m.policyChannels.set({ ...labels, topic: t.name }, t.channels);
    mem.topicLabels = topics;
  }

  /**
   * Writes the status when it changed, at most once per interval (a change between two
   * scrapes waits for the next slot); conditions keep their transition times; Events mark
   * the transitions.
   */
  private async ensureStatus(policy: ConnectionPolicy, mem: PolicyMemory, now: number, intervalMs: number): Promise<void> {
    const a = mem.assessment!;
    if (mem.forgotten) return;
    // Captured before the write: the cache may hand back the same object, updated.
    const before = policy.status?.conditions;
    const generation = policy.metadata.generation ?? 0;
    const nowIso = new Date(now).toISOString();
    const conditions = a.conditions.reduce((list, c) => setCondition(list, c, generation, nowIso), before ?? []);
    const status: PolicyStatus = { ...a.status, observedGeneration: generation, conditions };
    const json = canonicalJson(status);
    if (json === mem.lastStatusJson || json === canonicalJson(policy.status ?? {})) return;
    const generationChanged = policy.status?.observedGeneration !== generation;
    if (!generationChanged && now - mem.lastStatusWriteMs < intervalMs - 100) return;
    const patch: Record<string, unknown> = { ...status, capacity: status.capacity ?? null };
    await this.deps.writer.patchPolicyStatus(policy.metadata.namespace, policy.metadata.name, patch);
    this.deps.metrics.statusWrites.inc();
    mem.lastStatusWriteMs = now;
    mem.lastStatusJson = json;
    emitTransitionEvents(this.deps.events, policyRef(policy), before, conditions);
  }
}

function splitKey(key: string): [string, string] {
  const slash = key.indexOf("/");
  return [key.slice(0, slash), key.slice(slash + 1)];
}

function isReady(p: PodLike): boolean {
  return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** Whether `next` drops a field `before` set (the sidecar merges a PUT over its current values). */
function liftsAField(before: SidecarConfig, next: SidecarConfig): boolean {
  return (before.maxConnections !== undefined && next.maxConnections === undefined)
    || (before.rejectAtPercent !== undefined && next.rejectAtPercent === undefined)
    || (before.topics !== undefined && next.topics === undefined);
}

export function policyRef(policy: ConnectionPolicy): ObjectRef {
  return {
    apiVersion: API_VERSION, kind: KIND, namespace: policy.metadata.namespace, name: policy.metadata.name,
    ...(policy.metadata.uid ? { uid: policy.metadata.uid } : {}),
  };
}

