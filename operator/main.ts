#!/usr/bin/env node
// connmeter operator: wires config, informers, leader election, the controller and the admin
// plane. Logic lives in controller/, aggregate/, scale/; Kubernetes I/O in k8s/.
// First: exits with a clear message under a Node older than 24 (before any dependency loads).
import "../sidecar/require-node.js";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { OperatorAdmin } from "./admin/admin-server.js";
import { OperatorMetrics } from "./admin/metrics.js";
import { GROUP, PLURAL, REPORTING_CONTROLLER, VERSION, type ConnectionPolicy } from "./api/types.js";
import { ConfigError, loadOperatorConfig, usage } from "./config.js";
import type { Caches, ClusterWriter, HpaLike, PodLike, WorkloadLike } from "./controller/cluster.js";
import { PolicyController } from "./controller/controller.js";
import { Reconciler } from "./controller/reconciler.js";
import { getDeployment, getScale, patchPodAnnotations, patchPolicyFinalizers, patchPolicyStatus, patchScale, pauseDeployment } from "./k8s/api-writes.js";
import { EventRecorder } from "./k8s/events.js";
import { Informer } from "./k8s/informer.js";
import { loadKubeConfig } from "./k8s/kubeconfig.js";
import { LeaderElector, NotLeadingError, RENEW_DEADLINE_MS, guardMethods } from "./k8s/leader-election.js";
import { trimHpa, trimPod, trimPolicy, trimWorkload } from "./k8s/transforms.js";
import { releaseEverything } from "./k8s/uninstall-cleanup.js";
import { NamespaceTokens, secretReader } from "./k8s/tokens.js";
import { SidecarClient } from "./scrape/sidecar-client.js";
import { NamespaceMarker } from "./controller/namespace-marker.js";
import { caBundleTarget, patchNamespaceLabels, tlsSecretStore } from "./k8s/webhook-writes.js";
import { serviceDnsNames } from "./webhook/certs.js";
import { TlsKeeper } from "./webhook/tls-keeper.js";
import type { WebhookConfig } from "./webhook/webhook-config.js";
import { WebhookServer } from "./webhook/webhook-server.js";

function log(msg: string): void {
  console.log(`${new Date().toISOString()} connmeter-operator ${msg}`);
}

async function main(): Promise<void> {
  const config = loadOperatorConfig(process.argv.slice(2), process.env);
  if (config === "help") {
    console.log(usage());
    return;
  }
  const kc = loadKubeConfig(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {});
  if (config.cleanup) {
    const lease = config.leaderElect ? { namespace: config.leaderElectionNamespace, name: config.leaderElectionId, renewDeadlineMs: RENEW_DEADLINE_MS } : undefined;
    const result = await releaseEverything(kc, config.namespace, lease, log);
    process.exit(result.failures.length > 0 ? 1 : 0);
  }
  const metrics = new OperatorMetrics();
  const shutdown = new AbortController();
  const identity = `${process.env.POD_NAME || hostname()}_${randomBytes(4).toString("hex")}`;
  const ns = config.namespace ? `/namespaces/${encodeURIComponent(config.namespace)}` : "";
  // Each cache keeps only what the controller reads (k8s/transforms.ts): the pod informer sees
  // every pod of the cluster, and whole pods would cost ~15 KiB of heap each.
  const informer = <T extends { metadata?: object }>(resource: string, prefix: string, transform: (obj: unknown) => T) => new Informer<T & { metadata?: { name?: string } }>({
    kc, resource, path: `${prefix}${ns}/${resource}`, log, transform,
    onWatchRestart: (r, reason) => metrics.watchRestarts.inc({ resource: r, reason }),
  });
  const policies = informer<ConnectionPolicy>(PLURAL, `/apis/${GROUP}/${VERSION}`, trimPolicy);
  const pods = informer<PodLike>("pods", "/api/v1", trimPod);
  const deployments = informer<WorkloadLike>("deployments", "/apis/apps/v1", trimWorkload);
  const statefulSets = informer<WorkloadLike>("statefulsets", "/apis/apps/v1", trimWorkload);
  const hpas = informer<HpaLike>("horizontalpodautoscalers", "/apis/autoscaling/v2", trimHpa);
  const all = [policies, pods, deployments, statefulSets, hpas];
  const caches: Caches = { policies, pods, deployments, statefulSets, hpas };

  // Each namespace's sidecars get the token of its Secret connmeter-admin-token, else CONNMETER_ADMIN_TOKEN.
  const tokens = new NamespaceTokens({ read: secretReader(kc), fallback: config.adminToken, log });
  const sidecars = new SidecarClient({ maxConcurrent: config.maxConcurrentScrapes, tokens });
  const events = new EventRecorder({ kc, reportingController: REPORTING_CONTROLLER, reportingInstance: identity.slice(0, 128), log });
  // Every write (each writer method, whatever methods it grows, and the sidecars' budget
  // pushes) first checks that the Lease was renewed within renewDeadline: a leader that stalled
  // must not write next to its successor. A refused write fails like any failed write.
  let elector: LeaderElector | undefined;
  const requireLease = (): void => {
    if (!config.leaderElect) return;
    if (!elector) throw new NotLeadingError("not leading: leader election has not started");
    elector.assertLeading();
  };
  const namespaces = config.webhook
    ? new NamespaceMarker(guardMethods({ patchNamespaceLabels: (n: string, l: Record<string, string | null>) => patchNamespaceLabels(kc, n, l) }, requireLease), policies, log)
    : undefined;
  const reconciler = new Reconciler({
    caches, events, metrics, clock: Date.now, log, ...(namespaces ? { namespaces } : {}),
    sidecars: guardMethods(sidecars, requireLease, ["pushConfig", "resetConfig"]),
    writer: guardMethods<ClusterWriter>({
      patchPolicyStatus: (namespace, name, status) => patchPolicyStatus(kc, namespace, name, status),
      patchPolicyFinalizers: (namespace, name, finalizers, resourceVersion) => patchPolicyFinalizers(kc, namespace, name, finalizers, resourceVersion),
      getScale: (kind, namespace, name) => getScale(kc, kind, namespace, name),
      patchScale: (kind, namespace, name, replicas, resourceVersion) => patchScale(kc, kind, namespace, name, replicas, resourceVersion),
      patchPodAnnotations: (namespace, name, annotations) => patchPodAnnotations(kc, namespace, name, annotations),
      getDeployment: (namespace, name) => getDeployment(kc, namespace, name),
      pauseDeployment: (namespace, name, resourceVersion) => pauseDeployment(kc, namespace, name, resourceVersion),
    }, requireLease),
  });
  const controller = new PolicyController(caches, reconciler, metrics, log, config.concurrentReconciles);

  let leading = false;
  const synced = () => all.every((i) => i.hasSynced);
  const webhook = config.webhook ? startWebhook(config.webhook, { kc, caches, synced, isLeader: () => leading, requireLease, signal: shutdown.signal }) : undefined;
  // A replica is ready when its caches are synced and, with the webhook on, it serves a certificate.
  const admin = new OperatorAdmin(metrics, { synced: () => synced() && (webhook?.server.serving ?? true), role: () => (leading ? "leader" : "standby") });
  const at = await admin.start(config.metricsAddr, config.healthAddr);
  log(`metrics on ${at.metrics.host}:${at.metrics.port}, health on ${at.health.host}:${at.health.port}; watching ${config.namespace ? `namespace ${config.namespace}` : "all namespaces"}`);
  for (const i of all) i.start();

  const startLeading = async (): Promise<void> => {
    await Promise.all(all.map((i) => i.waitForSync()));
    leading = true;
    metrics.leader.set(1);
    void webhook?.keeper.tick();
    log("leading: reconciling ConnectionPolicies");
    controller.start({ policies, deployments, statefulSets });
  };
  if (config.leaderElect) {
    elector = new LeaderElector({
      kc, namespace: config.leaderElectionNamespace, name: config.leaderElectionId, identity, log,
      onStartedLeading: () => void startLeading(),
      // Lost the Lease: another replica may act already. Exit at once (no graceful shutdown), as
      // controller-runtime does; the Deployment restarts this replica as a standby.
      onStoppedLeading: () => {
        log("leader election lost: exiting so only the new leader acts");
        process.exit(1);
      },
      onNewLeader: (who) => log(`leader is ${who}${who === identity ? " (this replica)" : ""}`),
    });
    log(`leader election on Lease ${config.leaderElectionNamespace}/${config.leaderElectionId} as ${identity}`);
    void elector.run(shutdown.signal);
  } else {
    log("--leader-elect=false: acting as the only replica");
    void startLeading();
  }

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    await controller.stop();
    await events.flush();
    // Release only now: nothing of this replica acts any more, so the standby may take over at once.
    if (elector?.isLeader) await elector.release().catch((err: unknown) => log(`releasing the Lease failed: ${(err as Error).message}`));
    shutdown.abort();
    await Promise.all(all.map((i) => i.stop()));
    sidecars.close();
    await webhook?.server.close();
    await admin.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

interface WebhookDeps {
  kc: ReturnType<typeof loadKubeConfig>;
  caches: Caches;
  synced: () => boolean;
  isLeader: () => boolean;
  requireLease: () => void;
  signal: AbortSignal;
}

/**
 * The injection webhook: every replica serves it from the TLS Secret (reloaded every 30 s);
 * the leader keeps the certificate and the caBundle (writes guarded by the Lease).
 */
function startWebhook(cfg: WebhookConfig, d: WebhookDeps): { server: WebhookServer; keeper: TlsKeeper } {
  const namespace = process.env.POD_NAMESPACE || "default";
  const { policies, deployments, statefulSets } = d.caches;
  const server = new WebhookServer({
    log,
    context: () => (d.synced() ? { policies, deployments, statefulSets, defaults: cfg.sidecar, operatorNamespace: namespace } : undefined),
    onDecision: (dec, ns, ms) => {
      if (dec.outcome === "injected" || dec.outcome === "refused") log(`webhook: ${dec.outcome} a pod in ${ns}${dec.policy ? ` (policy ${dec.policy})` : ""} in ${ms.toFixed(1)} ms${dec.response.warnings ? `: ${dec.response.warnings.join("; ")}` : ""}`);
    },
  });
  let listening = false;
  const store = tlsSecretStore(d.kc, namespace, cfg.tlsSecret);
  const keeper = new TlsKeeper({
    store: guardMethods(store, d.requireLease, ["write"]),
    manage: cfg.manageCertificate
      ? { bundle: guardMethods(caBundleTarget(d.kc, cfg.configurationName), d.requireLease, ["write"]), dnsNames: serviceDnsNames(cfg.serviceName, namespace) }
      : undefined,
    isLeader: d.isLeader,
    clock: Date.now,
    log,
    onCertificate: (cert, key) => {
      if (!server.setCertificate(cert, key)) return;
      if (listening) {
        log("webhook: serving a new certificate");
        return;
      }
      listening = true;
      server.listen(cfg.addr.host, cfg.addr.port).then(
        (at) => log(`webhook: serving ${namespace}/${cfg.serviceName} on ${at.address}:${at.port}`),
        (err: unknown) => log(`webhook: cannot listen on ${cfg.addr.host}:${cfg.addr.port}: ${(err as Error).message}`),
      );
    },
  });
  void keeper.run(d.signal);
  return { server, keeper };
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`connmeter-operator: ${err.message}`);
    process.exit(2);
  }
  console.error(`connmeter-operator: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
