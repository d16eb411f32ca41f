// The operator's flags, each with a CONNMETER_* env equivalent (flags win). DESIGN.md "Contracts".
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_SECRET } from "../sidecar/admin/contract.js";
import { ConfigError, flagUsage, parseHostPort, readFlags, type HostPort } from "../sidecar/cli-flags.js";
import { WEBHOOK_FLAGS, loadWebhookConfig, type WebhookConfig } from "./webhook/webhook-config.js";

export { ConfigError };

export interface OperatorConfig {
  kubeconfig: string | undefined;
  /** Watch only this namespace; undefined = all. */
  namespace: string | undefined;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  metricsAddr: HostPort;
  healthAddr: HostPort;
  maxConcurrentScrapes: number;
  /** Policies reconciled at once (different policies only). */
  concurrentReconciles: number;
  /** Remove connmeter's finalizer and deletion costs everywhere, then exit (the chart's pre-delete hook). */
  cleanup: boolean;
  adminToken: string | undefined;
  /** Injection (issue 16): the admission webhook, when --webhook-addr is set. */
  webhook: WebhookConfig | undefined;
}

const FLAGS = {
  kubeconfig: { env: "CONNMETER_KUBECONFIG", default: "", help: "kubeconfig file (else the in-cluster ServiceAccount, else $KUBECONFIG / ~/.kube/config)" },
  namespace: { env: "CONNMETER_NAMESPACE", default: "", help: "watch ConnectionPolicies and pods of this namespace only (default: all)" },
  "leader-elect": { env: "CONNMETER_LEADER_ELECT", default: "true", help: "elect a leader on a Lease so several replicas can run (false for one local run)" },
  "leader-election-namespace": { env: "CONNMETER_LEADER_ELECTION_NAMESPACE", default: "", help: "namespace of the Lease (default: the pod's namespace, else default)" },
  "leader-election-id": { env: "CONNMETER_LEADER_ELECTION_ID", default: "connmeter-operator", help: "name of the Lease" },
  "metrics-addr": { env: "CONNMETER_METRICS_ADDR", default: "0.0.0.0:8080", help: "GET /metrics" },
  "health-addr": { env: "CONNMETER_HEALTH_ADDR", default: "0.0.0.0:8081", help: "GET /healthz, GET /readyz" },
  "max-concurrent-scrapes": { env: "CONNMETER_MAX_CONCURRENT_SCRAPES", default: "64", help: "sidecar calls (GET /stats, PUT /config) in flight at once" },
  "concurrent-reconciles": { env: "CONNMETER_CONCURRENT_RECONCILES", default: "4", help: "policies reconciled at once" },
  cleanup: { env: "CONNMETER_CLEANUP", default: "false", help: "remove connmeter's finalizer from every ConnectionPolicy and its deletion costs from pods, then exit (run before uninstalling)" },
  // --- injection webhook (issue 16) ---
  ...WEBHOOK_FLAGS,
} as const;

type FlagName = keyof typeof FLAGS;

export function usage(): string {
  return flagUsage("connmeter-operator", FLAGS, [
    `  env ${ADMIN_TOKEN_ENV}         bearer token sent to sidecars of namespaces without a Secret ${ADMIN_TOKEN_SECRET}`,
    "  env POD_NAMESPACE, POD_NAME        set by the chart (downward API): the Lease's namespace and this replica's identity",
  ]);
}

/** Reads flags, then env vars, then defaults; throws ConfigError naming the bad input and the fix. */
export function loadOperatorConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig | "help" {
  // `--leader-elect` alone means true, as Go's flag package takes it.
  const args = argv.map((a) => (a === "--leader-elect" ? "--leader-elect=true" : a === "--cleanup" ? "--cleanup=true" : a));
  const flags = readFlags<FlagName>(FLAGS, args, env, usage());
  if (flags === "help") return "help";
  const { get } = flags;
  const leaderElect = get("leader-elect").trim().toLowerCase();
  if (!["true", "false", "1", "0"].includes(leaderElect)) throw new ConfigError(`--leader-elect must be true or false, got "${get("leader-elect")}"`);
  return {
    kubeconfig: get("kubeconfig") || undefined,
    namespace: get("namespace") || undefined,
    leaderElect: leaderElect === "true" || leaderElect === "1",
    leaderElectionNamespace: get("leader-election-namespace") || env.POD_NAMESPACE || "default",
    leaderElectionId: get("leader-election-id"),
    metricsAddr: parseHostPort("metrics-addr", get("metrics-addr")),
    healthAddr: parseHostPort("health-addr", get("health-addr")),
    maxConcurrentScrapes: positive("max-concurrent-scrapes", get("max-concurrent-scrapes")),
    concurrentReconciles: positive("concurrent-reconciles", get("concurrent-reconciles")),
    cleanup: bool("cleanup", get("cleanup")),
    adminToken: env[ADMIN_TOKEN_ENV] || undefined,
    webhook: loadWebhookConfig(get),
  };
}

function positive(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new ConfigError(`--${flag} must be an integer in 1..100000, got "${value}"`);
  return n;
}

function bool(flag: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (!["true", "false", "1", "0"].includes(v)) throw new ConfigError(`--${flag} must be true or false, got "${value}"`);
  return v === "true" || v === "1";
}
