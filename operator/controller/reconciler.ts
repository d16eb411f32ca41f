// reconcile(namespace/name): read the world (the policy, its target, the target's pods, every
// metered pod's /stats), compute the desired state with pure functions (aggregate, budgets,
// scale decision, deletion costs, conditions), then write only what changed. Level-triggered:
// it never trusts an event's content, and running it twice in a row is harmless.
import { aggregate, type Aggregate } from "../aggregate/aggregate.js";
import type { OperatorMetrics } from "../admin/metrics.js";
import {
  API_VERSION, CLEANUP_FINALIZER, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION, EVENT_CLEANUP_INCOMPLETE,
  EVENT_FINALIZER_FAILED, EVENT_FLOOD_CLEARED, EVENT_FLOOD_DETECTED, EVENT_ROLLOUT_CHURN, EVENT_ROLLOUT_PAUSE_FAILED, EVENT_ROLLOUT_PAUSED, EVENT_SCALED_DOWN, EVENT_SCALED_UP, EVENT_STATUS_WRITE_FAILED, KIND, policyKey, withDefaults,
  type ConnectionPolicy, type PolicySpec, type PolicyStatus, type TargetKind,
} from "../api/types.js";
import { decideScale, type Recommendation, type ScaleEvent } from "../scale/decide.js";
import { deletionCosts } from "../scale/deletion-cost.js";
import type { SidecarClient, SidecarConfig, SidecarScope } from "../scrape/sidecar-client.js";
import { isConflict, type Caches, type ClusterWriter, type EventSink, type ObjectRef, type WorkloadLike } from "./cluster.js";
import {
  CLEANUP_RETRY_MS, MAX_CLEANUP_ATTEMPTS, addCleanupFinalizer, hasCleanupFinalizer, liftBudgets, removeCleanupFinalizer,
  removeDeletionCosts, unionByName,
} from "./finalizer.js";
import { assessCapacity, assessLimits, assessMetering, assessReady, assessScaling, emitTransitionEvents, type Assessment, type ScalingOutcome } from "./assess.js";
import { PodSamples, type ScrapeTarget } from "./pod-samples.js";
import type { PodObservation } from "../aggregate/aggregate.js";
import { budgetTtlSeconds, planBudgets, refreshDueMs, withoutRaises, type BudgetPod } from "./budget-plan.js";
import { writeScale, type ScaleWriteResult } from "./scale-write.js";
import { selectorMatches } from "./selector.js";
import { podsWithoutSidecar, scrapeTargets, startProblems } from "./target-pods.js";
import { MAX_LISTED_PODS, assessInjection, emitInjectionEvents } from "./assess-injection.js";
import { canonicalJson } from "./canonical-json.js";
import { occupancyPush, occupancySnapshot } from "../aggregate/occupancy.js";
import type { OccupancyPush } from "../../sidecar/admin/contract.js";
import { setCondition } from "./conditions.js";
import type { NamespaceMarker } from "./namespace-marker.js";
import { UsageMeter } from "./usage.js";
import { floodCondition, joinBuckets, liftsABucket, throttleBuckets } from "./protection.js";
import { FloodDetector, describeReading, type AttemptSample, type FloodState } from "./flood.js";
import { RolloutGuard, churnRatios, rolloutCondition, type ChurnSample, type RolloutVerdict } from "./rollout.js";
import { decidePause, pauseDeployment, pauseNote, rolloutCommands, type PauseRecord } from "./rollout-pause.js";

export interface ReconcilerDeps {
  caches: Caches;
  writer: ClusterWriter;
  events: EventSink;
  sidecars: Pick<SidecarClient, "stats" | "pushConfig" | "resetConfig">;
  metrics: OperatorMetrics;
  clock: () => number;
  log: (line: string) => void;
  /** Injection (issue 16): labels the namespaces that hold a policy for the webhook's namespaceSelector. */
  namespaces?: Pick<NamespaceMarker, "ensure" | "release">;
}

export interface ReconcileResult {
  /** Run again after this long, in ms (the next scrape, or the next cleanup attempt); undefined: only on the next change. */
  requeueAfterMs?: number;
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
  /** The last status write's error, told once (log and Event) until a write succeeds. */
  statusWriteError: string | undefined;
  /** status.usage, summed from the sidecars' counter increases (read back from the status at start). */
  usage: UsageMeter;
  /** Spike detection on upgrade and join rates (spec.floodProtection), and its last verdict. */
  flood: FloodDetector;
  floodState: FloodState | undefined;
  /** Churn of a rollout's new pods against the old (spec.rolloutGuard); the message of its last True verdict. */
  rollout: RolloutGuard;
  rolloutWhy: string | undefined;
  /** action pause: the revision the Deployment was paused for (never paused again for it), and the last failed attempt. */
  rolloutPause: PauseRecord | undefined;
  rolloutPauseError: string | undefined;
}

/** Unchanged status is written again after this long, so its lastUpdateTime shows the operator is alive. */
export const STATUS_HEARTBEAT_MS = 60_000;

/** A scrape's timeout: well under the interval, never long. */
export function scrapeTimeoutMs(intervalMs: number): number {
  return Math.min(2000, Math.max(250, Math.floor(intervalMs / 3)));
}

export class Reconciler {
  private readonly memory = new Map<string, PolicyMemory>();
  /** Cleanup attempts of deleting policies that failed so far, by key. */
  private readonly cleanupAttempts = new Map<string, number>();
  /** Policies whose finalizer could not be added, reported once each. */
  private readonly finalizerWarned = new Set<string>();

  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = splitKey(key);
    const policy = this.deps.caches.policies.get(namespace, name);
    // Gone or going: handled, then never requeued (a requeued deleted key spun the queue, issue 14).
    if (!policy) {
      await this.forget(key);
      return {};
    }
    if (policy.metadata.deletionTimestamp) return this.finalize(key, policy);
    await this.ensureFinalizer(key, policy);
    await this.deps.namespaces?.ensure(namespace);
    const spec = withDefaults(policy.spec);
    const intervalMs = spec.scrapeIntervalSeconds * 1000;
    const now = this.deps.clock();
    const mem = this.memoryFor(key, policy);
    mem.adminPort = spec.sidecar.adminPort;
    const target = this.target(namespace, spec);

    const scrapeDue = now - mem.lastScrapeMs >= intervalMs - 100 || mem.generation !== policy.metadata.generation;
    if (scrapeDue || !mem.assessment) {
      mem.generation = policy.metadata.generation;
      const pods = target ? scrapeTargets(this.deps.caches.pods, namespace, target) : [];
      await mem.samples.scrape(pods, (t) => this.fetchStats(t, spec, intervalMs, { namespace, policy: key }), now);
      mem.lastScrapeMs = now;
      const observed = mem.samples.observations(pods, now, intervalMs);
      const agg = aggregate(observed, spec.topics);
      this.checkFlood(policy, spec, observed, pods, mem, now);
      // spec.occupancy (issue 17): the exposed part of this scrape's counts goes out with the push, so sidecars are at most one interval plus one push behind.
      const occupancy = spec.occupancy && occupancyPush(spec.occupancy, occupancySnapshot(spec.occupancy, observed, agg, new Date(now)));
      // Two policies on one workload would push budgets and scale against each other: the older acts, the other meters.
      const older = target ? this.olderPolicyOnTarget(policy) : undefined;
      if (target && !older) await this.pushBudgets(policy, spec, pods, agg, mem, intervalMs, now, occupancy);
      const scaling = !target ? undefined
        : older ? { mode: "policyConflict" as const, current: target.spec?.replicas ?? 1, policy: older }
          : await this.ensureScale(policy, spec, target, pods, agg, mem, now);
      mem.assessment = this.assess(policy, spec, target, pods, agg, scaling, mem, older);
      const fresh = observed.flatMap((o) => (!o.stale && o.sample?.usage ? [{ pod: o.name, usage: o.sample.usage }] : []));
      mem.assessment.status.usage = mem.usage.observe(fresh, agg.connections, spec.topics.map((t) => t.match), now);
      mem.usage.retain(new Set(pods.map((p) => p.name)));
      if (spec.floodProtection && mem.floodState) mem.assessment.conditions.push(floodCondition(mem.floodState, spec.floodProtection));
      if (spec.rolloutGuard) await this.checkRollout(policy, spec.rolloutGuard, observed, mem, now);
      else this.clearRolloutGauges(policy);
    }
    await this.ensureStatus(policy, mem, now, intervalMs);
    return { requeueAfterMs: Math.max(0, mem.lastScrapeMs + intervalMs - this.deps.clock()) };
  }

  /**
   * The policy is gone from the cache: drop what is remembered and lift what this replica set
   * (its budgets at once, the TTL would later; its deletion costs), best effort and once.
   */
  async forget(key: string, last?: ConnectionPolicy): Promise<void> {
    this.cleanupAttempts.delete(key);
    this.finalizerWarned.delete(key);
    const [namespace, name] = splitKey(key);
    await this.deps.namespaces?.release(namespace, name);
    const mem = this.dropMemory(key);
    if (!mem) return;
    const port = last ? withDefaults(last.spec).sidecar.adminPort : mem.adminPort;
    const pushed = last && this.othersOnTarget(last).length > 0 ? [] : mem.samples.pushedPods();
    await liftBudgets(this.deps.sidecars, pushed, port, { namespace, policy: key }, (pod, err) => this.cleanupError(key, `could not lift the budgets of pod ${pod}`, err, true));
    await removeDeletionCosts(this.deps.writer, this.deps.caches.pods, namespace, name, (pod, err) => this.cleanupError(key, `could not remove the deletion cost of pod ${pod}`, err));
  }

  /**
   * The policy is being deleted. With connmeter's finalizer: clean up (every pod of the target
   * and every pod pushed to, so a policy deleted while no operator ran is cleaned up too), then
   * remove that finalizer only. Cleanup that fails is tried MAX_CLEANUP_ATTEMPTS times, then
   * given up with an Event: deletion is never held for unreachable sidecars or a missing target.
   */
  private async finalize(key: string, policy: ConnectionPolicy): Promise<ReconcileResult> {
    // Not ours to hold (another tool's finalizer): ours is gone already, or was never added.
    if (!hasCleanupFinalizer(policy)) {
      await this.forget(key, policy);
      return {};
    }
    const failed = await this.cleanUp(key, policy);
    const attempt = (this.cleanupAttempts.get(key) ?? 0) + 1;
    if (failed.length > 0 && attempt < MAX_CLEANUP_ATTEMPTS) {
      this.cleanupAttempts.set(key, attempt);
      return { requeueAfterMs: CLEANUP_RETRY_MS * attempt };
    }
    if (failed.length > 0) {
      const note = `Cleanup gave up after ${attempt} attempts; deletion goes on. Pods not cleaned up: ${failed.join(", ")}. `
        + `Their budgets fall back to the sidecars' flags when the pushed TTL passes; remove a leftover deletion cost with `
        + `kubectl annotate pod <pod> ${DELETION_COST_ANNOTATION}- ${DELETION_COST_OWNER_ANNOTATION}-`;
      this.deps.log(`policy ${key}: ${note}`);
      this.deps.events.record(policyRef(policy), "Warning", EVENT_CLEANUP_INCOMPLETE, "Cleanup", note);
    }
    await this.deps.namespaces?.release(policy.metadata.namespace, policy.metadata.name);
    try {
      await removeCleanupFinalizer(this.deps.writer, policy);
    } catch (err) {
      // 409: the policy changed since this read; its update event brings it back to decide again.
      if (isConflict(err)) return { requeueAfterMs: CLEANUP_RETRY_MS };
      const note = `could not remove finalizer ${CLEANUP_FINALIZER}: ${(err as Error).message}. Grant the operator patch on `
        + `connectionpolicies (chart templates/rbac.yaml), or remove it by hand: kubectl patch connpol ${policy.metadata.name} `
        + `-n ${policy.metadata.namespace} --type=json -p '[{"op":"remove","path":"/metadata/finalizers/${policy.metadata.finalizers!.indexOf(CLEANUP_FINALIZER)}"}]'`;
      this.deps.log(`policy ${key}: ${note}`);
      this.deps.events.record(policyRef(policy), "Warning", EVENT_FINALIZER_FAILED, "RemoveFinalizer", note);
      return { requeueAfterMs: withDefaults(policy.spec).scrapeIntervalSeconds * 1000 };
    }
    this.cleanupAttempts.delete(key);
    this.dropMemory(key);
    return {};
  }

  /** One cleanup attempt: lifts budgets and removes deletion costs; returns the pods that failed. */
  private async cleanUp(key: string, policy: ConnectionPolicy): Promise<string[]> {
    const { namespace, name } = policy.metadata;
    const mem = this.memory.get(key);
    if (mem) mem.forgotten = true;
    const spec = withDefaults(policy.spec);
    const target = this.target(namespace, spec);
    // Another policy on the same workload pushes its budgets (or takes over now): lifting them
    // would leave the pods on their flags, uncapped, until its next push.
    const pods = this.othersOnTarget(policy).length > 0 ? []
      : unionByName(mem?.samples.pushedPods() ?? [], target ? scrapeTargets(this.deps.caches.pods, namespace, target) : []);
    const failed = await liftBudgets(this.deps.sidecars, pods, spec.sidecar.adminPort, { namespace: policy.metadata.namespace, policy: key }, (pod, err) => this.cleanupError(key, `could not lift the budgets of pod ${pod}`, err, true));
    failed.push(...await removeDeletionCosts(this.deps.writer, this.deps.caches.pods, namespace, name, (pod, err) => this.cleanupError(key, `could not remove the deletion cost of pod ${pod}`, err)));
    return [...new Set(failed)].sort();
  }

  /** Logs one failed cleanup write; a failed DELETE /config also counts as a failed push. */
  private cleanupError(key: string, what: string, err: Error, isPush = false): void {
    if (isPush) this.deps.metrics.configPushFailures.inc();
    this.deps.log(`policy ${key} deleted: ${what} (${err.message})`);
  }

  /** Forgets a policy's memory and gauges; returns what was remembered, if anything. */
  private dropMemory(key: string): PolicyMemory | undefined {
    const mem = this.memory.get(key);
    if (!mem) return undefined;
    this.memory.delete(key);
    mem.forgotten = true;
    const [namespace, name] = splitKey(key);
    this.deps.metrics.forgetPolicy(namespace, name, mem.topicLabels);
    return mem;
  }

  /**
   * Adds connmeter's finalizer before acting, so cleanup outlives this process. A failure never
   * stops metering: a 409 is retried on the next reconcile (the update event brings the fresh
   * object); anything else (RBAC) is reported once per policy and retried at the interval.
   */
  private async ensureFinalizer(key: string, policy: ConnectionPolicy): Promise<void> {
    if (hasCleanupFinalizer(policy)) return;
    try {
      await addCleanupFinalizer(this.deps.writer, policy);
      this.finalizerWarned.delete(key);
    } catch (err) {
      if (isConflict(err) || this.finalizerWarned.has(key)) return;
      this.finalizerWarned.add(key);
      const note = `could not add finalizer ${CLEANUP_FINALIZER}: ${(err as Error).message}. The policy still works, but if it is `
        + `deleted while no operator runs, its deletion costs stay behind. Grant the operator patch on connectionpolicies (chart templates/rbac.yaml).`;
      this.deps.log(`policy ${key}: ${note}`);
      this.deps.events.record(policyRef(policy), "Warning", EVENT_FINALIZER_FAILED, "AddFinalizer", note);
    }
  }

  private memoryFor(key: string, policy: ConnectionPolicy): PolicyMemory {
    let mem = this.memory.get(key);
    if (!mem || mem.uid !== policy.metadata.uid) {
      mem = {
        uid: policy.metadata.uid, generation: undefined, samples: new PodSamples(), lastScrapeMs: -Infinity, history: [], scaleEvents: [],
        lastStatusWriteMs: -Infinity, lastStatusJson: canonicalJson(policy.status ?? {}), topicLabels: [], assessment: undefined,
        adminPort: 0, forgotten: false, statusWriteError: undefined, usage: new UsageMeter(policy.status?.usage, this.deps.clock()),
        flood: new FloodDetector(), floodState: undefined, rollout: new RolloutGuard(), rolloutWhy: undefined, rolloutPause: undefined, rolloutPauseError: undefined,
      };
      this.memory.set(key, mem);
    }
    return mem;
  }

  /** The other policies, not being deleted, that target the same workload as `policy`. */
  private othersOnTarget(policy: ConnectionPolicy): ConnectionPolicy[] {
    const { kind, name } = policy.spec.targetRef;
    return this.deps.caches.policies.list(policy.metadata.namespace).filter((p) => p.metadata.name !== policy.metadata.name
      && !p.metadata.deletionTimestamp && p.spec.targetRef.kind === kind && p.spec.targetRef.name === name);
  }

  /** The name of an older policy (by creation, then name) with the same target, if any. */
  private olderPolicyOnTarget(policy: ConnectionPolicy): string | undefined {
    const rank = (p: ConnectionPolicy) => `${new Date(p.metadata.creationTimestamp ?? 0).toISOString()}/${p.metadata.name}`;
    const mine = rank(policy);
    return this.othersOnTarget(policy).filter((p) => rank(p) < mine).map((p) => p.metadata.name).sort()[0];
  }

  private target(namespace: string, spec: PolicySpec): WorkloadLike | undefined {
    const { kind, name } = spec.targetRef;
    const lister = kind === "StatefulSet" ? this.deps.caches.statefulSets : this.deps.caches.deployments;
    return lister.get(namespace, name);
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
   * spec, its share of the cluster cap and of each group's cap (budget-plan.ts), and a TTL
   * that outlasts a failover. A sidecar that reports holding exactly that config already is
   * skipped until its refresh is due (PodSamples.holds). Lowered budgets land before raised ones; a field the spec no
   * longer sets is lifted by resetting the sidecar to its flags first. A failed push is
   * remembered (the pod's budget stays reserved, and LimitsApplied says so).
   */
  private async pushBudgets(policy: ConnectionPolicy, spec: PolicySpec, pods: ScrapeTarget[], agg: Aggregate, mem: PolicyMemory, intervalMs: number, now: number, occupancy: OccupancyPush | undefined): Promise<void> {
    const budgetPods: BudgetPod[] = pods.map((p) => ({
      name: p.name,
      fresh: mem.samples.isFresh(p.name),
      terminating: p.terminating,
      pushFailed: mem.samples.pushError(p.name) !== undefined,
      connections: agg.podConnections.get(p.name),
      groupChannels: agg.podGroupChannels.get(p.name),
      inForce: mem.samples.inForce(p.name, now),
      everPushed: mem.samples.pushed(p.name) !== undefined,
    }));
    const plan = planBudgets(spec, budgetPods, budgetTtlSeconds(intervalMs))
      .map((p) => (occupancy ? { ...p, config: { ...p.config, occupancy } } : p));
    const ip = new Map(pods.map((p) => [p.name, p.ip]));
    const scope: SidecarScope = { namespace: policy.metadata.namespace, policy: policyKey(policy.metadata.namespace, policy.metadata.name) };
    const push = async (name: string, planned: SidecarConfig): Promise<boolean> => {
      if (mem.forgotten) return false;
      const throttle = mem.floodState?.phase === "flood" ? mem.floodState.throttle : undefined;
      const config: SidecarConfig = { ...planned, policy: policy.metadata.name, ...joinBuckets(spec), ...(throttle ? throttleBuckets(spec, throttle) : {}) };
      // What it holds already need not be sent again until its refresh is due.
      if (mem.samples.holds(name, config, now, refreshDueMs(name, intervalMs))) {
        this.deps.metrics.configPushesUnchanged.inc();
        return true;
      }
      const before = mem.samples.pushed(name);
      const at = ip.get(name)!;
      try {
        if (before && liftsAField(before, config)) await this.deps.sidecars.resetConfig(at, spec.sidecar.adminPort, scrapeTimeoutMs(intervalMs), scope);
        const revision = await this.deps.sidecars.pushConfig(at, spec.sidecar.adminPort, config, scrapeTimeoutMs(intervalMs), scope);
        mem.samples.setPushed(name, config, now, revision);
        return true;
      } catch (err) {
        const code = (err as { code?: string }).code ?? "error";
        mem.samples.setPushError(name, { code, message: (err as Error).message });
        this.deps.metrics.configPushFailures.inc();
        this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: PUT /config to pod ${name} failed: ${(err as Error).message}`);
        return false;
      }
    };
    const first = plan.filter((p) => p.phase === 1);
    const lowered = await Promise.all(first.map((p) => push(p.name, p.config)));
    // A pod that did not take its lower budget holds more than the split gave it (a probe's
    // reservation was counted already): then nothing may rise until the next split.
    const raiseAllowed = lowered.every((ok, i) => ok || first[i]!.probe);
    await Promise.all(plan.filter((p) => p.phase === 2).map((p) => {
      const config = raiseAllowed ? p.config : withoutRaises(p, mem.samples.inForce(p.name, now));
      return config ? push(p.name, config) : Promise.resolve(false);
    }));
  }

  /**
   * Spike detection (spec.floodProtection): feeds the scrape's attempt counters to the
   * detector; its verdict becomes FloodDetected, an Event when a flood begins or ends, and,
   * with action throttle, the tighter buckets pushBudgets sends.
   */
  private checkFlood(policy: ConnectionPolicy, spec: PolicySpec, observed: readonly PodObservation[], pods: readonly ScrapeTarget[], mem: PolicyMemory, now: number): void {
    const fp = spec.floodProtection;
    if (!fp) {
      mem.floodState = undefined;
      return;
    }
    const samples: AttemptSample[] = observed.flatMap((o) => (!o.stale && o.sample?.attempts && o.sample.usage
      ? [{ pod: o.name, since: o.sample.usage.since, upgrades: o.sample.attempts.upgrades, joins: o.sample.attempts.joins }] : []));
    const { state, transition } = mem.flood.observe(samples, pods.length, fp, now);
    mem.flood.retain(new Set(pods.map((p) => p.name)));
    mem.floodState = state;
    if (transition === "started" && state.phase === "flood") {
      const c = floodCondition(state, fp);
      this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: ${c.reason}: ${c.message}`);
      this.deps.events.record(policyRef(policy), "Warning", EVENT_FLOOD_DETECTED, state.throttle ? "Throttle" : "Detect", c.message.slice(0, 1000));
    } else if (transition === "cleared" && state.phase === "normal") {
      this.deps.events.record(policyRef(policy), "Normal", EVENT_FLOOD_CLEARED, fp.action === "throttle" ? "Unthrottle" : "Detect",
        `Flood over: rates under the thresholds for ${fp.cooldownSeconds} s${fp.action === "throttle" ? "; the sidecars' own buckets are back" : ""}. ${describeReading(state.reading, fp)}`.slice(0, 1000));
    }
  }

  /**
   * Rollout guard (spec.rolloutGuard): the pods' churn counters by revision (pod-template-hash,
   * or controller-revision-hash) into status.rollout and RolloutChurn, with an Event when the
   * new pods' churn first exceeds the ratio. With action pause, the Deployment is paused once
   * per new revision (rollout-pause.ts); rolling back is always the user's call.
   */
  private async checkRollout(policy: ConnectionPolicy, guard: NonNullable<PolicySpec["rolloutGuard"]>, observed: readonly PodObservation[], mem: PolicyMemory, now: number): Promise<void> {
    const samples: ChurnSample[] = observed.flatMap((o) => {
      const labels = this.deps.caches.pods.get(policy.metadata.namespace, o.name)?.metadata?.labels;
      const revision = labels?.["pod-template-hash"] ?? labels?.["controller-revision-hash"];
      const a = o.sample?.attempts;
      const u = o.sample?.usage;
      if (o.stale || !revision || !a || !u) return [];
      return [{ pod: o.name, revision, since: u.since, connectionSeconds: u.connectionSeconds, disconnects: a.disconnects ?? 0, leaves: a.leaves ?? 0, joins: a.joins, joinErrors: a.joinErrors ?? 0 }];
    });
    const verdict = mem.rollout.observe(samples, guard, now);
    const wasTrue = mem.rolloutWhy !== undefined;
    mem.rolloutWhy = verdict?.exceeded === true ? mem.rolloutWhy ?? verdict.why : undefined;
    this.updateRolloutGauges(policy, guard, verdict);
    const { kind, name } = policy.spec.targetRef;
    const { namespace } = policy.metadata;
    const newRevision = verdict?.status.new.revisions[0];
    // What was paused is kept until another revision is: one revision missing from a scrape (a
    // failed scrape of the new pod) must not let the guard pause again over a user's resume.
    if (!verdict) mem.rolloutPauseError = undefined;
    if (!wasTrue && mem.rolloutWhy !== undefined) {
      const c = rolloutCommands(kind, name, namespace);
      const next = kind !== "Deployment" ? "to hold the rollout, raise spec.updateStrategy.rollingUpdate.partition"
        : guard.action === "pause" ? "connmeter pauses the Deployment now" : `to stop the rollout: ${c.pause}`;
      this.deps.events.record(policyRef(policy), "Warning", EVENT_ROLLOUT_CHURN, "Compare",
        `${mem.rolloutWhy}. connmeter does not roll back; ${next}, to roll back: ${c.undo}`.slice(0, 1000));
    }
    if (verdict && newRevision !== undefined) await this.ensurePaused(policy, guard, verdict, newRevision, mem, now);
    const assessment = mem.assessment!;
    if (verdict) {
      const done = mem.rolloutPause?.revision === newRevision ? mem.rolloutPause : undefined;
      assessment.status.rollout = { ...verdict.status, ...(done ? { pausedRevision: done.revision, pausedAt: new Date(done.atMs).toISOString() } : {}) };
    }
    const pausedInCache = kind === "Deployment" && this.deps.caches.deployments.get(namespace, name)?.spec?.paused === true;
    if (mem.rolloutPause && pausedInCache) mem.rolloutPause.seenPaused = true;
    const note = mem.rolloutWhy === undefined ? undefined : pauseNote({
      guard, kind, name, namespace, done: mem.rolloutPause, newRevision, error: mem.rolloutPauseError,
      resumed: mem.rolloutPause?.seenPaused === true && !pausedInCache,
    });
    assessment.conditions.push(rolloutCondition(verdict, guard, note === undefined ? undefined : `${mem.rolloutWhy}. ${note}`));
  }

  /**
   * action pause: pauses the target Deployment for `newRevision` unless that was done already
   * (then never again: a user's resume stands). A failure is reported in RolloutChurn (and by
   * an Event once per distinct error) and tried again next interval.
   */
  private async ensurePaused(policy: ConnectionPolicy, guard: NonNullable<PolicySpec["rolloutGuard"]>, verdict: RolloutVerdict, newRevision: string, mem: PolicyMemory, now: number): Promise<void> {
    const { kind, name } = policy.spec.targetRef;
    const { namespace } = policy.metadata;
    const decision = decidePause(guard, kind, verdict.exceeded === true, newRevision, mem.rolloutPause);
    if (decision !== "pause" || mem.forgotten) return;
    const key = policyKey(namespace, policy.metadata.name);
    const outcome = await pauseDeployment(this.deps.writer, namespace, name);
    const c = rolloutCommands(kind, name, namespace);
    if (outcome.kind === "paused" || outcome.kind === "foundPaused") {
      mem.rolloutPause = { revision: newRevision, how: outcome.kind, atMs: now, seenPaused: outcome.kind === "foundPaused" };
      mem.rolloutPauseError = undefined;
      this.deps.log(`policy ${key}: ${outcome.kind === "paused" ? "paused" : "found paused"} Deployment ${name} for revision ${newRevision}: ${mem.rolloutWhy}`);
      if (outcome.kind === "paused") {
        this.deps.events.record(policyRef(policy), "Warning", EVENT_ROLLOUT_PAUSED, "Pause",
          `Paused Deployment ${name} (spec.paused: true) for revision ${newRevision}: ${mem.rolloutWhy}. Resume: ${c.resume} (not paused again for this revision); roll back: ${c.undo}`.slice(0, 1000));
      }
      return;
    }
    if (outcome.kind === "changed") return;
    if (mem.rolloutPauseError === outcome.error) return;
    mem.rolloutPauseError = outcome.error;
    this.deps.log(`policy ${key}: ${outcome.error}`);
    this.deps.events.record(policyRef(policy), "Warning", EVENT_ROLLOUT_PAUSE_FAILED, "Pause", `Could not pause Deployment ${name} (tried again every interval): ${outcome.error}`.slice(0, 1000));
  }

  private updateRolloutGauges(policy: ConnectionPolicy, guard: NonNullable<PolicySpec["rolloutGuard"]>, verdict: RolloutVerdict | undefined): void {
    const labels = { namespace: policy.metadata.namespace, policy: policy.metadata.name };
    const m = this.deps.metrics;
    m.rolloutMaxChurnRatio.set(labels, guard.maxChurnRatio);
    const ratios = verdict ? churnRatios(verdict.status, guard) : {};
    const set = (signal: string, v: number | undefined) => (v === undefined ? m.rolloutChurnRatio.remove({ ...labels, signal }) : m.rolloutChurnRatio.set({ ...labels, signal }, v));
    set("churn", ratios.churn);
    set("join_errors", ratios.joinErrors);
  }

  private clearRolloutGauges(policy: ConnectionPolicy): void {
    const labels = { namespace: policy.metadata.namespace, policy: policy.metadata.name };
    for (const signal of ["churn", "join_errors"]) this.deps.metrics.rolloutChurnRatio.remove({ ...labels, signal });
    this.deps.metrics.rolloutMaxChurnRatio.remove(labels);
  }

  /**
   * Decides the replicas and, when they change, writes deletion costs (scale-down) and the scale
   * through writeScale: read, decide from the read, write with its resourceVersion, on 409 again.
   */
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
    const { history, scaleEvents } = mem;
    const decide = (replicas: number) => decideScale({
      nowMs: now, current: replicas, connections: agg.connections, metricPods: pods.length - agg.unknownPods.length, missingPods: agg.unknownPods.length, spec: scaling,
      history, events: scaleEvents,
    });
    const cached = { current, decision: decide(current) };
    // The cache says whether a change may be due (no API call in the steady state); the scale
    // subresource says what is written, with its resourceVersion, as the HPA does.
    const result: ScaleWriteResult = cached.decision.desired === current || mem.forgotten ? { ...cached, written: false }
      : await writeScale(this.deps.writer, { kind, namespace: policy.metadata.namespace, name }, cached, decide, async () => {
        if (kind === "Deployment" && scaling.connectionAwareScaleDown) await this.ensureDeletionCosts(policy, target, agg);
      });
    if (result.scaledToZero) return { mode: "scaledToZero", current: 0 };
    const { decision } = result;
    mem.history = decision.history;
    mem.scaleEvents = decision.events;
    const from = result.current;
    // A failed write is reported in ScalingActive and decided again next interval; it must not
    // stop the status (and so `kubectl get connpol`) from following the counts.
    if (result.error !== undefined) {
      this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: scaling ${kind} ${name} ${from} -> ${decision.desired} failed: ${result.error}`);
      return { mode: "active", current: from, decision, kind: kind as TargetKind, scaledAt: undefined, scaleError: result.error };
    }
    if (!result.written) return { mode: "active", current: from, decision, kind: kind as TargetKind, scaledAt: undefined };
    mem.scaleEvents.push({ atMs: now, change: decision.desired - from });
    const up = decision.desired > from;
    this.deps.metrics.scaleActions.inc({ direction: up ? "up" : "down" });
    this.deps.events.record(policyRef(policy), "Normal", up ? EVENT_SCALED_UP : EVENT_SCALED_DOWN, "Scale",
      `Scaled ${kind} ${name} from ${from} to ${decision.desired} replicas: ${agg.connections} connections, target ${scaling.targetConnectionsPerPod} per pod`);
    this.deps.log(`policy ${policyKey(policy.metadata.namespace, policy.metadata.name)}: scaled ${kind} ${name} ${from} -> ${decision.desired} (${agg.connections} connections)`);
    return { mode: "active", current: from, decision, kind: kind as TargetKind, scaledAt: new Date(now).toISOString() };
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

  private assess(policy: ConnectionPolicy, spec: PolicySpec, target: WorkloadLike | undefined, pods: ScrapeTarget[], agg: Aggregate, scaling: ScalingOutcome | undefined, mem: PolicyMemory, older: string | undefined): Assessment {
    const metering = assessMetering(spec, target !== undefined, pods.length, agg, mem.samples, target ? startProblems(this.deps.caches.pods, policy.metadata.namespace, target) : []);
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
    const limits = assessLimits(spec, policy.metadata.namespace, pods, mem.samples, older, target !== undefined);
    const missing = target ? podsWithoutSidecar(this.deps.caches.pods, policy.metadata.namespace, target, (name) => !mem.samples.neverAnswered(name)) : [];
    if (missing.length > 0) status.podsWithoutSidecar = missing.slice(0, MAX_LISTED_PODS);
    const injected = assessInjection(spec, policy.metadata.namespace, target !== undefined, missing);
    const conditions = [metering, scaled.active, scaled.limited, capacity.condition, limits, injected];
    return { status, conditions: [assessReady(conditions), ...conditions] };
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
    // usage grows every scrape: it rides along with other changes and the heartbeat, so it
    // adds no status write of its own (it is at most STATUS_HEARTBEAT_MS old).
    const { usage: _usage, rollout: _rollout, ...counted } = status;
    const json = canonicalJson(counted);
    const { lastUpdateTime, usage: _writtenUsage, rollout: _writtenRollout, ...written } = policy.status ?? {};
    // Unchanged counts are still written once a heartbeat, so lastUpdateTime (kubectl's
    // UPDATED column) tells current numbers from the last ones of an operator that is gone.
    const lastUpdateMs = Math.max(mem.lastStatusWriteMs, lastUpdateTime ? Date.parse(lastUpdateTime) : -Infinity);
    const heartbeatDue = now - lastUpdateMs >= STATUS_HEARTBEAT_MS;
    if (!heartbeatDue && (json === mem.lastStatusJson || json === canonicalJson(written))) return;
    const generationChanged = policy.status?.observedGeneration !== generation;
    if (!generationChanged && now - mem.lastStatusWriteMs < intervalMs - 100) return;
    const patch: Record<string, unknown> = { ...status, capacity: status.capacity ?? null, podsWithoutSidecar: status.podsWithoutSidecar ?? null, rollout: status.rollout ?? null, lastUpdateTime: nowIso };
    try {
      await this.deps.writer.patchPolicyStatus(policy.metadata.namespace, policy.metadata.name, patch);
    } catch (err) {
      // The status is a report; budgets and scaling must not wait on it. The write is tried
      // again at the next interval, and a refusal is told once per distinct error.
      this.statusWriteFailed(policy, mem, err);
      return;
    }
    mem.statusWriteError = undefined;
    this.deps.metrics.statusWrites.inc();
    mem.lastStatusWriteMs = now;
    mem.lastStatusJson = json;
    emitTransitionEvents(this.deps.events, policyRef(policy), before, conditions);
    emitInjectionEvents(this.deps.events, policyRef(policy), before, conditions);
  }

  private statusWriteFailed(policy: ConnectionPolicy, mem: PolicyMemory, err: unknown): void {
    const message = (err as Error).message;
    this.deps.metrics.statusWriteFailures.inc();
    if (mem.statusWriteError === message) return;
    mem.statusWriteError = message;
    const key = policyKey(policy.metadata.namespace, policy.metadata.name);
    this.deps.log(`policy ${key}: writing the status failed (budgets and scaling go on; retried every interval): ${message}`);
    this.deps.events.record(policyRef(policy), "Warning", EVENT_STATUS_WRITE_FAILED, "Report",
      `Could not write the status (retried every interval; limits and scaling are not affected): ${message.slice(0, 1000)}`);
  }
}

function splitKey(key: string): [string, string] {
  const slash = key.indexOf("/");
  return [key.slice(0, slash), key.slice(slash + 1)];
}

/** Whether `next` drops a field `before` set (the sidecar merges a PUT over its current values). */
function liftsAField(before: SidecarConfig, next: SidecarConfig): boolean {
  return (before.maxConnections !== undefined && next.maxConnections === undefined)
    || (before.rejectAtPercent !== undefined && next.rejectAtPercent === undefined)
    || (before.topics !== undefined && next.topics === undefined)
    || (before.occupancy !== undefined && before.occupancy !== null && next.occupancy === undefined)
    || liftsABucket(before, next);
}

export function policyRef(policy: ConnectionPolicy): ObjectRef {
  return {
    apiVersion: API_VERSION, kind: KIND, namespace: policy.metadata.namespace, name: policy.metadata.name,
    ...(policy.metadata.uid ? { uid: policy.metadata.uid } : {}),
  };
}

