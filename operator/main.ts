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
import { getScale, patchPodAnnotations, patchPolicyFinalizers, patchPolicyStatus, patchScale } from "./k8s/api-writes.js";
import { EventRecorder } from "./k8s/events.js";
import { Informer } from "./k8s/informer.js";
import { loadKubeConfig } from "./k8s/kubeconfig.js";
import { LeaderElector, NotLeadingError, RENEW_DEADLINE_MS, guardMethods } from "./k8s/leader-election.js";
import { trimHpa, trimPod, trimPolicy, trimWorkload } from "./k8s/transforms.js";
import { releaseEverything } from "./k8s/uninstall-cleanup.js";
import { NamespaceTokens, secretReader } from "./k8s/tokens.js";
import { SidecarClient } from "./scrape/sidecar-client.js";

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
  const reconciler = new Reconciler({
    caches, events, metrics, clock: Date.now, log,
    sidecars: guardMethods(sidecars, requireLease, ["pushConfig", "resetConfig"]),
    writer: guardMethods<ClusterWriter>({
      patchPolicyStatus: (namespace, name, status) => patchPolicyStatus(kc, namespace, name, status),
      patchPolicyFinalizers: (namespace, name, finalizers, resourceVersion) => patchPolicyFinalizers(kc, namespace, name, finalizers, resourceVersion),
      getScale: (kind, namespace, name) => getScale(kc, kind, namespace, name),
      patchScale: (kind, namespace, name, replicas, resourceVersion) => patchScale(kc, kind, namespace, name, replicas, resourceVersion),
      patchPodAnnotations: (namespace, name, annotations) => patchPodAnnotations(kc, namespace, name, annotations),
    }, requireLease),
  });
  const controller = new PolicyController(caches, reconciler, metrics, log, config.concurrentReconciles);

  let leading = false;
  const admin = new OperatorAdmin(metrics, { synced: () => all.every((i) => i.hasSynced), role: () => (leading ? "leader" : "standby") });
  const at = await admin.start(config.metricsAddr, config.healthAddr);
  log(`metrics on ${at.metrics.host}:${at.metrics.port}, health on ${at.health.host}:${at.health.port}; watching ${config.namespace ? `namespace ${config.namespace}` : "all namespaces"}`);
  for (const i of all) i.start();

  const startLeading = async (): Promise<void> => {
    await Promise.all(all.map((i) => i.waitForSync()));
    leading = true;
    metrics.leader.set(1);
    log("leading: reconciling ConnectionPolicies");
    controller.start({ policies, deployments, statefulSets });
  };
  const shutdown = new AbortController();
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
    await admin.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`connmeter-operator: ${err.message}`);
    process.exit(2);
  }
  console.error(`connmeter-operator: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
