// The operator's own metrics (GET /metrics on --metrics-addr). One prefix, base units, help on
// every metric; label values bounded by the number of policies (namespace, policy) and their
// topic groups (status.topics is bounded to 65 entries).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { WorkQueueMetrics, WorkQueueProbe } from "../controller/work-queue.js";

/** Buckets of the work-queue durations, in seconds: 1 ms (a queued key picked at once) to 60 s (a slow scrape round). */
const WORK_QUEUE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileDuration = new Histogram({
    name: "connmeter_operator_reconcile_duration_seconds",
    help: "Wall time of one reconcile of a ConnectionPolicy, scrapes and writes included.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: "connmeter_operator_reconcile_errors_total",
    help: "Reconciles that failed and were retried with backoff.",
    registers: [this.registry],
  });
  readonly scrapeDuration = new Histogram({
    name: "connmeter_operator_scrape_duration_seconds",
    help: "Wall time of one GET /stats of a sidecar.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly scrapeFailures = new Counter({
    name: "connmeter_operator_scrape_failures_total",
    help: "GET /stats calls that failed, by stable error code (timeout, refused, unreachable, http_<status>, bad_json, ...).",
    labelNames: ["code"],
    registers: [this.registry],
  });
  readonly configPushFailures = new Counter({
    name: "connmeter_operator_config_push_failures_total",
    help: "PUT or DELETE /config calls to sidecars that failed.",
    registers: [this.registry],
  });
  readonly configPushesUnchanged = new Counter({
    name: "connmeter_operator_config_pushes_unchanged_total",
    help: "PUT /config calls not made because the sidecar reported holding exactly that config, pushed less than a refresh period ago.",
    registers: [this.registry],
  });
  readonly statusWrites = new Counter({
    name: "connmeter_operator_status_writes_total",
    help: "Status patches written to ConnectionPolicies (none is written when nothing changed).",
    registers: [this.registry],
  });
  readonly statusWriteFailures = new Counter({
    name: "connmeter_operator_status_write_failures_total",
    help: "Status patches the API server refused or that failed; retried every interval (budgets and scaling go on).",
    registers: [this.registry],
  });
  readonly scaleActions = new Counter({
    name: "connmeter_operator_scale_actions_total",
    help: "Replica changes written through the target's scale subresource, by direction.",
    labelNames: ["direction"],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "connmeter_operator_leader",
    help: "1 while this replica holds the leader Lease and acts, 0 while it stands by.",
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: "connmeter_operator_watch_restarts_total",
    help: "Watches restarted, by resource and reason (closed, expired, error).",
    labelNames: ["resource", "reason"],
    registers: [this.registry],
  });
  readonly policyConnections = new Gauge({
    name: "connmeter_policy_connections",
    help: "Open WebSocket connections and long-poll sessions over a policy's target, from its sidecars.",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  readonly policyChannels = new Gauge({
    name: "connmeter_policy_channels",
    help: "Joined Phoenix channels over a policy's target, per topic group (or busiest topic, or _other).",
    labelNames: ["namespace", "policy", "topic"],
    registers: [this.registry],
  });
  readonly policyDesiredReplicas = new Gauge({
    name: "connmeter_policy_desired_replicas",
    help: "Replicas the policy's scaling decision asks for (the current replicas when observing only).",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  readonly policyReplicas = new Gauge({
    name: "connmeter_policy_replicas",
    help: "Replicas of the policy's target (spec.replicas).",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  readonly policyMaxReplicas = new Gauge({
    name: "connmeter_policy_max_replicas",
    help: "The policy's spec.scaling.maxReplicas (absent when it only observes): alert when desired replicas sit at it.",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  readonly policyMaxConnections = new Gauge({
    name: "connmeter_policy_max_connections",
    help: "The policy's cluster-wide connection cap (spec.limits.maxConnections); absent when none is set.",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  readonly policyPods = new Gauge({
    name: "connmeter_policy_pods",
    help: "Pods of the policy's target by scrape state (metered, stale).",
    labelNames: ["namespace", "policy", "state"],
    registers: [this.registry],
  });

  // --- rollout guard (issue 18) ---
  readonly rolloutChurnRatio = new Gauge({
    name: "connmeter_operator_rollout_churn_ratio",
    help: "During a rollout of a policy's target: the new pods' rate over the old pods' (old floored at 0.01), by signal (churn: disconnects and leaves per connection-minute; join_errors: join errors per join); present once both sides have spec.rolloutGuard's minimum sample.",
    labelNames: ["namespace", "policy", "signal"],
    registers: [this.registry],
  });
  readonly rolloutMaxChurnRatio = new Gauge({
    name: "connmeter_operator_rollout_max_churn_ratio",
    help: "The policy's spec.rolloutGuard.maxChurnRatio; absent without a rollout guard.",
    labelNames: ["namespace", "policy"],
    registers: [this.registry],
  });
  // --- end rollout guard ---

  // The work queue's, after client-go's workqueue metrics as controller-runtime exports them
  // (workqueue_depth, _adds_total, ...), labelled by controller name.
  private readonly workQueueProbes = new Map<string, WorkQueueProbe>();
  readonly workQueueDepth = new Gauge({
    name: "connmeter_workqueue_depth",
    help: "Keys waiting in the work queue (not running), by controller name.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly workQueueAdds = new Counter({
    name: "connmeter_workqueue_adds_total",
    help: "Keys added to the work queue (deduplicated adds not counted), by controller name.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly workQueueLatency = new Histogram({
    name: "connmeter_workqueue_queue_duration_seconds",
    help: "How long a key waited in the work queue before it was reconciled, by controller name.",
    labelNames: ["name"],
    buckets: WORK_QUEUE_BUCKETS,
    registers: [this.registry],
  });
  readonly workQueueWorkDuration = new Histogram({
    name: "connmeter_workqueue_work_duration_seconds",
    help: "How long one reconcile of a key took, from the work queue's view, by controller name.",
    labelNames: ["name"],
    buckets: WORK_QUEUE_BUCKETS,
    registers: [this.registry],
  });
  readonly workQueueRetries = new Counter({
    name: "connmeter_workqueue_retries_total",
    help: "Keys retried with backoff after a failed reconcile, by controller name.",
    labelNames: ["name"],
    registers: [this.registry],
  });
  readonly reconcileTerminalErrors = new Counter({
    name: "connmeter_operator_reconcile_terminal_errors_total",
    help: "Reconciles that failed on a write the API server refused for good (400, 403, 422): retried at the policy's interval, not with backoff.",
    registers: [this.registry],
  });
  readonly workQueueUnfinished = new Gauge({
    name: "connmeter_workqueue_unfinished_work_seconds",
    help: "Seconds the keys being reconciled now have run, summed; a value that only grows shows a stuck reconcile.",
    labelNames: ["name"],
    registers: [this.registry],
    collect: () => { for (const [name, p] of this.workQueueProbes) this.workQueueUnfinished.set({ name }, p.unfinishedWorkSeconds()); },
  });
  readonly workQueueLongestRunning = new Gauge({
    name: "connmeter_workqueue_longest_running_processor_seconds",
    help: "Seconds the longest-running reconcile has run so far, by controller name.",
    labelNames: ["name"],
    registers: [this.registry],
    collect: () => { for (const [name, p] of this.workQueueProbes) this.workQueueLongestRunning.set({ name }, p.longestRunningSeconds()); },
  });

  /** The hooks a WorkQueue reports through, for the controller `name` (a bounded label: one per controller). */
  workQueue(name: string): WorkQueueMetrics {
    const labels = { name };
    return {
      depth: (keys) => this.workQueueDepth.set(labels, keys),
      added: () => this.workQueueAdds.inc(labels),
      queueLatency: (s) => this.workQueueLatency.observe(labels, s),
      workDuration: (s) => this.workQueueWorkDuration.observe(labels, s),
      retried: () => this.workQueueRetries.inc(labels),
      terminal: () => this.reconcileTerminalErrors.inc(),
      bind: (probe) => { this.workQueueProbes.set(name, probe); },
    };
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "connmeter_operator_" });
  }

  /** Drops every series of a policy (it was deleted); `topics` are the topic labels it had. */
  forgetPolicy(namespace: string, policy: string, topics: readonly string[]): void {
    for (const g of [this.policyConnections, this.policyDesiredReplicas, this.policyReplicas, this.policyMaxReplicas, this.policyMaxConnections]) g.remove({ namespace, policy });
    for (const topic of topics) this.policyChannels.remove({ namespace, policy, topic });
    for (const state of ["metered", "stale"]) this.policyPods.remove({ namespace, policy, state });
    for (const signal of ["churn", "join_errors"]) this.rolloutChurnRatio.remove({ namespace, policy, signal });
    this.rolloutMaxChurnRatio.remove({ namespace, policy });
  }
}
