// The operator's own metrics (GET /metrics on --metrics-addr). One prefix, base units, help on
// every metric; label values bounded by the number of policies (namespace, policy) and their
// topic groups (status.topics is bounded to 65 entries).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "connmeter_operator_" });
  }

  /** Drops every series of a policy (it was deleted); `topics` are the topic labels it had. */
  forgetPolicy(namespace: string, policy: string, topics: readonly string[]): void {
    for (const g of [this.policyConnections, this.policyDesiredReplicas, this.policyReplicas, this.policyMaxReplicas, this.policyMaxConnections]) g.remove({ namespace, policy });
    for (const topic of topics) this.policyChannels.remove({ namespace, policy, topic });
    for (const state of ["metered", "stale"]) this.policyPods.remove({ namespace, policy, state });
  }
}
