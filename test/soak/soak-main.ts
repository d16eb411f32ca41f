// `make soak`: the fault soak of issue 14 on the local cluster. Three metered workloads with
// cluster caps, real phoenix clients pressing the caps, two operator replicas with leader
// election, and for CONNMETER_SOAK_SECONDS (default 450) seeded random faults: sidecar kills
// and freezes, a kube-apiserver restart, leader kills, `kubectl scale` by hand, 300-character
// topics, and 100 policy create/delete cycles (every 4th held by another tool's finalizer).
// Measured throughout and judged at the end (table printed, .local/soak-report.json):
// the cluster caps never exceeded, no scale write applied twice, status exact at quiescence,
// operator heap and CPU flat, /healthz answered ≥ 99.9 %. Exit 1 when an invariant is broken,
// 2 when the soak itself could not run. Env: CONNMETER_SOAK_SECONDS, CONNMETER_SOAK_SEED,
// CONNMETER_SOAK_CHURN_CYCLES, CONNMETER_SOAK_SETTLE_SECONDS, CONNMETER_SOAK_TOKENS=
// shared|per-namespace, CONNMETER_SOAK_KEEP=1.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { clusterUp, releaseCluster } from "../env/cluster.js";
import { findRepoRoot, isLoopbackPodNet, loadClusterConfig } from "../env/config.js";
import { ClientPool } from "./client-pool.js";
import { FaultInjector, planFaults, type PlannedFault } from "./faults.js";
import { OperatorFleet } from "./operator-fleet.js";
import { OperatorSampler } from "./operator-sampler.js";
import { PodDirectory } from "./pod-directory.js";
import { PolicyChurn } from "./policy-churn.js";
import { checkStatusExact, type StatusRecord } from "./quiescence.js";
import { formatReplicas, formatVerdicts, summarizeReplica, verdicts, writeReport } from "./report.js";
import { Rng } from "./rng.js";
import { ScaleAudit } from "./scale-audit.js";
import { SidecarSampler, readConfigSource } from "./sidecar-sampler.js";
import { loadSoakConfig, type SoakConfig } from "./soak-config.js";
import { soakKube, type SoakKube } from "./soak-kube.js";
import { SoakLog, errText, sleep, sleepUnless } from "./soak-log.js";
import {
  SYSTEM_NAMESPACE, applyPolicy, deleteSoakNamespaces, deployWorkloads, ensureNamespace, soakWorkloads, waitForWorkloadsReady, type Workload,
} from "./workloads.js";

const WARMUP_MS = 20_000;
const CHURN_GRACE_MS = 30_000;

/** Everything the phases share. */
interface Soak {
  cfg: SoakConfig;
  log: SoakLog;
  k: SoakKube;
  rng: Rng;
  workloads: Workload[];
  pods: PodDirectory;
  pools: Map<Workload, ClientPool>;
  fleet: OperatorFleet;
  sidecars: SidecarSampler;
  operators: OperatorSampler;
  audit: ScaleAudit;
  faults: FaultInjector;
  churn: PolicyChurn;
  /** Stops the samplers and the pod directory. */
  sampling: AbortController;
  /** Ctrl-C. */
  interrupt: AbortController;
  /** The fault schedule drawn from the seed. */
  plan: PlannedFault[];
}

function requireBuilt(root: string): void {
  const missing = ["dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"].filter((f) => !existsSync(join(root, f)));
  if (missing.length) throw new Error(`${missing.join(", ")} not built: run \`make build\` (make soak does)`);
}

async function setup(s: Soak): Promise<void> {
  const { k, log, workloads, cfg } = s;
  await deleteSoakNamespaces(k, 90_000, (l) => log.line(l), { untilGone: true });
  await ensureNamespace(k, SYSTEM_NAMESPACE);
  await deployWorkloads(k, workloads);
  await waitForWorkloadsReady(k, workloads, 180_000);
  for (const w of workloads) await applyPolicy(k, w, cfg.intervalSeconds);
  log.line(`setup: ${workloads.map((w) => `${w.namespace}/${w.name} ${w.replicas} pod(s) cap ${w.maxConnections}${w.scaling ? ` scaling ${w.scaling.minReplicas}..${w.scaling.maxReplicas} at ${w.scaling.targetConnectionsPerPod}/pod` : " observe-only"}, ${w.clients} clients`).join("; ")}`);
  void s.pods.run(1000, s.sampling.signal);
  await s.pods.refresh();
  // Before any operator runs: every scale it writes is counted against this generation.
  await s.audit.begin();
  await s.fleet.start();
  const leader = await s.fleet.waitForLeader(60_000);
  log.line(`setup: ${leader.name} leads`);
  await waitForPushedBudgets(s, 30_000);
  void s.sidecars.run(s.sampling.signal);
  void s.operators.run(s.sampling.signal);
  for (const pool of s.pools.values()) pool.start();
  await sleepUnless(WARMUP_MS, s.interrupt.signal);
  log.line(`setup: warm-up done, ${[...s.pools.values()].map((p) => `${p.workload.namespace} ${p.open()} sockets`).join(", ")}`);
}

/** Waits (bounded) until every sidecar holds a budget the operator pushed; says so if not. */
async function waitForPushedBudgets(s: Soak, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sources = await Promise.all(s.workloads.flatMap((w) => s.pods.all(w).map(async (p) => `${p.name}=${p.ip ? await readConfigSource(p.ip, w.token) : "no IP"}`)));
    if (sources.every((x) => x.endsWith("=pushed"))) return s.log.line(`setup: every sidecar holds a pushed budget (${sources.length})`);
    if (Date.now() > deadline) return s.log.line(`setup: not every sidecar holds a pushed budget after ${timeoutMs / 1000} s: ${sources.join(", ")}`);
    await sleep(500);
    await s.pods.refresh();
  }
}

async function faultPhase(s: Soak): Promise<void> {
  const spanMs = s.cfg.faultSeconds * 1000;
  const plan = s.plan;
  s.log.line(`faults: ${plan.length} faults over ${s.cfg.faultSeconds} s (seed ${s.cfg.seed}), ${s.cfg.churnCycles} policy cycles alongside`);
  const faultStop = AbortSignal.any([AbortSignal.timeout(spanMs + 5_000), s.interrupt.signal]);
  const churnStop = AbortSignal.any([AbortSignal.timeout(spanMs + CHURN_GRACE_MS), s.interrupt.signal]);
  await Promise.all([s.faults.run(plan, faultStop), s.churn.run(churnStop)]);
}

async function settle(s: Soak): Promise<{ status: StatusRecord[]; settled: boolean }> {
  const { log } = s;
  await s.faults.thawAll();
  for (const pool of s.pools.values()) pool.freeze();
  log.line("quiesce: faults over, sidecars thawed, clients hold their sockets and open no new ones");
  let settled = true;
  try {
    await waitForWorkloadsReady(s.k, s.workloads, 90_000);
  } catch (err) {
    settled = false;
    log.line(`quiesce: ${errText(err)}`);
  }
  await sleepUnless(s.cfg.settleSeconds * 1000, s.interrupt.signal);
  const status: StatusRecord[] = [];
  for (const w of s.workloads) {
    const r = await checkStatusExact(s.k, w, s.pods, 2 * s.cfg.intervalSeconds * 1000 + 2000);
    log.line(`quiesce: ${r.workload} status ${r.statusConnections ?? "-"}/${r.statusChannels ?? "-"} vs sidecars ${r.sidecarConnections ?? "-"}/${r.sidecarChannels ?? "-"} (connections/channels): ${r.exact ? "exact" : "DIFFERENT"}`);
    status.push(r);
  }
  return { status, settled };
}

async function main(): Promise<number> {
  const root = findRepoRoot();
  const cfg = loadSoakConfig(process.env, root);
  const log = new SoakLog();
  requireBuilt(root);
  const clusterConfig = loadClusterConfig();
  if (isLoopbackPodNet(clusterConfig)) throw new Error("the soak needs a network namespace per pod, as the e2e suite does: run it as root with CONNMETER_POD_NET unset");
  log.line(`soak: seed ${cfg.seed}, faults for ${cfg.faultSeconds} s, ${cfg.churnCycles} policy cycles, settle ${cfg.settleSeconds} s, ${cfg.tokens} admin token(s); report to ${cfg.reportPath}`);
  const up = await clusterUp((l) => log.line(l), clusterConfig, { owner: "e2e" });
  const k = soakKube(up.kubeconfig);
  const rng = new Rng(cfg.seed);
  const operatorToken = `soak-${rng.word(24)}`;
  // Tokens from a stream of their own: the token mode does not shift the seed's other draws.
  const workloads = soakWorkloads(operatorToken, cfg.tokens, new Rng(cfg.seed + 1));
  const pods = new PodDirectory(k, workloads);
  const elapsedS = () => log.elapsedS();
  const fleet = new OperatorFleet(k, operatorToken, join(root, ".local", "soak-logs"), (l) => log.line(l), elapsedS);
  const operators = new OperatorSampler(fleet, elapsedS);
  const audit = new ScaleAudit(k, workloads);
  const pools = new Map(workloads.map((w) => [w, new ClientPool(w, pods, rng.fork())]));
  const s: Soak = {
    cfg, log, k, rng, workloads, pods, pools, fleet, operators, audit,
    sidecars: new SidecarSampler(workloads, pods, elapsedS),
    faults: new FaultInjector({ k, workloads, pods, pools, fleet, operatorSampler: operators, audit, rng: rng.fork(), log: (l) => log.line(l), elapsedS }),
    churn: new PolicyChurn(k, workloads, rng.fork(), {
      cycles: cfg.churnCycles, finalizerEvery: cfg.finalizerEvery, spreadMs: cfg.faultSeconds * 1000, intervalSeconds: cfg.intervalSeconds,
    }, (l) => log.line(l)),
    sampling: new AbortController(), interrupt: new AbortController(), plan: planFaults(cfg.faultSeconds * 1000, rng.fork()),
  };
  process.once("SIGINT", () => {
    log.line("SIGINT: cutting the soak short, cleaning up");
    s.interrupt.abort();
  });
  try {
    const t0 = Date.now();
    await setup(s);
    const t1 = Date.now();
    await faultPhase(s);
    const t2 = Date.now();
    const { status, settled } = await settle(s);
    const t3 = Date.now();
    s.sampling.abort();
    const scale = await audit.finish(fleet.replicas);
    const replicas = fleet.replicas.map(summarizeReplica);
    const findings = {
      config: cfg, durationS: { total: Math.round((t3 - log.startedAt) / 1000), setup: Math.round((t1 - t0) / 1000), faults: Math.round((t2 - t1) / 1000), settle: Math.round((t3 - t2) / 1000) },
      plan: s.plan, faults: s.faults.done, rebudgets: await s.faults.rebudgetsSettled(), churn: s.churn.counts,
      clients: Object.fromEntries([...pools.values()].map((p) => [p.workload.namespace, p.counts])),
      caps: s.sidecars.records, scale, status, replicas: fleet.replicas, deploymentsSettled: settled,
    };
    const vs = verdicts(findings, replicas);
    writeReport(cfg.reportPath, findings, replicas, vs);
    console.log(`\nconnmeter fault soak: seed ${cfg.seed}, ${findings.durationS.total} s (setup ${findings.durationS.setup}, faults ${findings.durationS.faults}, settle ${findings.durationS.settle}); ${s.faults.done.length} faults, ${s.churn.counts.done}/${s.churn.counts.planned} policy cycles (${s.churn.counts.withFinalizer} held by a finalizer, ${s.churn.counts.failed} failed)\n`);
    console.log(formatVerdicts(vs));
    console.log(`\noperator replicas:\n${formatReplicas(replicas)}`);
    console.log(`\nclients: ${[...pools.values()].map((p) => `${p.workload.namespace} ${JSON.stringify(p.counts)}`).join("\n         ")}`);
    const failed = vs.filter((v) => !v.ok);
    console.log(`\nreport: ${cfg.reportPath}`);
    console.log(failed.length ? `soak: FAILED ${failed.length} invariant(s): ${failed.map((v) => v.invariant).join("; ")}` : "soak: every invariant held");
    if (s.interrupt.signal.aborted) return 130;
    return failed.length ? 1 : 0;
  } finally {
    await cleanup(s, cfg.keep);
  }
}

async function cleanup(s: Soak, keep: boolean): Promise<void> {
  const { log } = s;
  s.sampling.abort();
  await s.faults.thawAll().catch(() => undefined);
  await Promise.all([...s.pools.values()].map((p) => p.close()));
  await s.fleet.stopAll();
  if (keep) {
    log.line("cleanup: CONNMETER_SOAK_KEEP=1: namespaces and cluster left running (`make cluster-down` stops it)");
    return;
  }
  await deleteSoakNamespaces(s.k, 90_000, (l) => log.line(l)).catch((err: unknown) => log.line(`cleanup: ${errText(err)}`));
  await s.k.core.deleteNamespace({ name: SYSTEM_NAMESPACE }).catch(() => undefined);
  const stopped = await releaseCluster((l) => log.line(l));
  log.line(stopped ? "cleanup: the cluster this soak started is stopped" : "cleanup: done (the cluster was already running: left running)");
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(`soak: could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(2);
});
