// The faults: when (a schedule drawn from the seed before the soak starts) and how (injected
// one after another; a freeze thaws on its own timer). Kinds: a sidecar SIGKILLed (its node
// agent restarts it) or frozen with SIGSTOP for 5–15 s (it keeps its sockets, answers
// nothing), kube-apiserver restarted, the leading operator replica SIGKILLed, a target
// scaled by hand with `kubectl scale`, clients joining 300-character topics.
import type { V1Pod } from "@kubernetes/client-node";
import { execFileSync } from "node:child_process";
import { restartApiserver } from "../env/cluster.js";
import { containerPids, freezeContainer, killContainer } from "../env/pod-processes.js";
import type { ClientPool } from "./client-pool.js";
import type { OperatorFleet } from "./operator-fleet.js";
import type { OperatorSampler } from "./operator-sampler.js";
import type { PodDirectory } from "./pod-directory.js";
import type { Rng } from "./rng.js";
import { readConfigSource } from "./sidecar-sampler.js";
import type { ScaleAudit } from "./scale-audit.js";
import { retrying, type SoakKube } from "./soak-kube.js";
import { errText, sleep, sleepUnless } from "./soak-log.js";
import type { Workload } from "./workloads.js";

export type FaultKind = "sidecar-kill" | "sidecar-freeze" | "apiserver-restart" | "leader-kill" | "manual-scale" | "long-topic";

export interface PlannedFault {
  atMs: number;
  kind: FaultKind;
}

/** A sidecar killed in place (same pod IP): how long until it enforced a pushed config again. */
export interface RebudgetRecord {
  pod: string;
  /** Seconds from the kill until its GET /config said "pushed"; null = not within {@link REBUDGET_WAIT_MS}. */
  seconds: number | null;
}

/**
 * How long a killed sidecar may take to get a budget again: its restart by the node agent, and
 * the operator's next interval even across a failover (the soak's gap: 2 leases + 30 s + 2
 * intervals is the worst; far less without one).
 */
export const REBUDGET_WAIT_MS = 90_000;

export interface FaultLogEntry {
  atS: number;
  kind: FaultKind;
  what: string;
}

const MAX_MANUAL_REPLICAS = 4;
const LONG_TOPIC_CLIENTS = 2;

/** The fault schedule over `spanMs`, from the seed alone. */
export function planFaults(spanMs: number, rng: Rng): PlannedFault[] {
  const spanS = spanMs / 1000;
  const at = (lo: number, hi: number) => Math.round(rng.between(lo, hi) * spanMs);
  const plan: PlannedFault[] = [
    { atMs: at(0.35, 0.5), kind: "apiserver-restart" },
    { atMs: at(0.15, 0.3), kind: "leader-kill" },
    { atMs: at(0.6, 0.75), kind: "leader-kill" },
    { atMs: at(0.05, 0.2), kind: "long-topic" },
    { atMs: at(0.5, 0.9), kind: "long-topic" },
  ];
  const some = (kind: FaultKind, n: number, lo: number, hi: number) => {
    for (let i = 0; i < n; i++) plan.push({ atMs: at(lo, hi), kind });
  };
  some("manual-scale", Math.max(2, Math.round(spanS / 120)), 0.05, 0.9);
  some("sidecar-kill", Math.max(2, Math.round(spanS / 60)), 0.02, 0.92);
  some("sidecar-freeze", Math.max(2, Math.round(spanS / 60)), 0.02, 0.9);
  return plan.sort((a, b) => a.atMs - b.atMs);
}

export interface FaultDeps {
  k: SoakKube;
  workloads: readonly Workload[];
  pods: PodDirectory;
  pools: ReadonlyMap<Workload, ClientPool>;
  fleet: OperatorFleet;
  operatorSampler: OperatorSampler;
  audit: ScaleAudit;
  rng: Rng;
  log: (line: string) => void;
  elapsedS: () => number;
}

export class FaultInjector {
  readonly done: FaultLogEntry[] = [];
  readonly rebudgets: RebudgetRecord[] = [];
  private readonly watches: Promise<void>[] = [];
  private readonly frozen = new Map<string, { pod: V1Pod; thaw: Promise<void> }>();

  constructor(private readonly d: FaultDeps) {}

  /** Injects the planned faults at their times (relative to now) until done or `signal` aborts. */
  async run(plan: readonly PlannedFault[], signal: AbortSignal): Promise<void> {
    const t0 = Date.now();
    for (const [i, f] of plan.entries()) {
      await sleepUnless(Math.max(0, t0 + f.atMs - Date.now()), signal);
      if (signal.aborted) return;
      let what: string;
      try {
        what = await this.inject(f.kind);
      } catch (err) {
        what = `failed: ${errText(err)}`;
      }
      this.done.push({ atS: this.d.elapsedS(), kind: f.kind, what });
      this.d.log(`fault ${i + 1}/${plan.length} ${f.kind}: ${what}`);
    }
  }

  /** Thaws every frozen sidecar now (quiescence, or cleanup). */
  async thawAll(): Promise<void> {
    for (const [key, f] of this.frozen) {
      this.thaw(key, f.pod);
    }
    await Promise.all([...this.frozen.values()].map((f) => f.thaw));
  }

  private inject(kind: FaultKind): Promise<string> {
    switch (kind) {
      case "sidecar-kill": return this.sidecarKill();
      case "sidecar-freeze": return this.sidecarFreeze();
      case "apiserver-restart": return this.apiserverRestart();
      case "leader-kill": return this.d.fleet.killLeader((r) => this.d.operatorSampler.sampleResources(r));
      case "manual-scale": return this.manualScale();
      case "long-topic": return this.longTopic();
    }
  }

  /**
   * A pod of a random workload with a running sidecar that is not frozen; ready or not (a
   * sidecar at its budget reports not ready, and those are the ones worth hitting).
   */
  private pickPod(): { w: Workload; pod: V1Pod; name: string } | undefined {
    const candidates = this.d.workloads.flatMap((w) => this.d.pods.all(w)
      .filter((p) => !p.deleting && p.ip && containerPids(p.pod).has("sidecar") && !this.frozen.has(`${w.namespace}/${p.name}`))
      .map((p) => ({ w, pod: p.pod, name: p.name })));
    return candidates.length ? this.d.rng.pick(candidates) : undefined;
  }

  private async sidecarKill(): Promise<string> {
    const c = this.pickPod();
    if (!c) return "no pod with a running sidecar (skipped)";
    const pid = killContainer(c.pod, "sidecar");
    const t0 = Date.now();
    const record: RebudgetRecord = { pod: `${c.w.namespace}/${c.name}`, seconds: null };
    this.rebudgets.push(record);
    // The restarted sidecar starts on its flags: the operator must notice (its revision changed)
    // and push its budget again. Watched apart, so the next faults keep their schedule.
    this.watches.push(this.watchRebudget(c.pod.status?.podIP ?? "", c.w.token, t0, record));
    return `SIGKILL sidecar of ${c.w.namespace}/${c.name} (pid ${pid})`;
  }

  /** Waits for every re-budget watch (bounded by {@link REBUDGET_WAIT_MS} each). */
  async rebudgetsSettled(): Promise<RebudgetRecord[]> {
    await Promise.all(this.watches);
    return this.rebudgets;
  }

  private async watchRebudget(ip: string, token: string, t0: number, record: RebudgetRecord): Promise<void> {
    // First the old process's answers must end (it may still answer for a moment), then the new one's flags turn to pushed.
    await sleep(1000);
    while (Date.now() - t0 < REBUDGET_WAIT_MS) {
      if (ip && (await readConfigSource(ip, token)) === "pushed") {
        record.seconds = Math.round((Date.now() - t0) / 100) / 10;
        return;
      }
      await sleep(250);
    }
  }

  private async sidecarFreeze(): Promise<string> {
    const c = this.pickPod();
    if (!c) return "no pod with a running sidecar (skipped)";
    const forMs = this.d.rng.int(5000, 15000);
    const key = `${c.w.namespace}/${c.name}`;
    freezeContainer(c.pod, "sidecar", true);
    const thaw = sleep(forMs).then(() => this.thaw(key, c.pod));
    this.frozen.set(key, { pod: c.pod, thaw });
    return `SIGSTOP sidecar of ${key} for ${(forMs / 1000).toFixed(1)} s`;
  }

  private thaw(key: string, pod: V1Pod): void {
    if (!this.frozen.delete(key)) return;
    try {
      freezeContainer(pod, "sidecar", false);
    } catch {
      // the process is gone (its pod deleted meanwhile): nothing to thaw
    }
  }

  private async apiserverRestart(): Promise<string> {
    const t0 = Date.now();
    await restartApiserver(3000, () => undefined);
    return `kube-apiserver stopped 3 s and restarted, ready again after ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  }

  /**
   * `kubectl scale` with the Deployment's resourceVersion as precondition, so the write is
   * known to have changed the replicas (and bumped the generation) exactly when it succeeds;
   * on a conflict (the operator wrote meanwhile) it reads again, a few times.
   */
  private async manualScale(): Promise<string> {
    const w = this.d.rng.pick(this.d.workloads);
    for (let attempt = 1; ; attempt++) {
      const dep = await retrying("read Deployment", () => this.d.k.apps.readNamespacedDeployment({ name: w.name, namespace: w.namespace }));
      const current = dep.spec?.replicas ?? 1;
      const up = current <= 1 || (current < MAX_MANUAL_REPLICAS && this.d.rng.next() < 0.5);
      const to = up ? current + 1 : current - 1;
      const args = ["scale", `deployment/${w.name}`, "-n", w.namespace, `--replicas=${to}`, `--resource-version=${dep.metadata?.resourceVersion}`];
      try {
        execFileSync("kubectl", args, { env: { ...process.env, KUBECONFIG: this.d.k.kubeconfig }, stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
      } catch (err) {
        const raw = (err as { stderr?: unknown }).stderr;
        const stderr = typeof raw === "string" ? raw : Buffer.isBuffer(raw) ? raw.toString("utf8") : errText(err);
        if (attempt < 5 && /conflict|modified|Expected resource version|try again|connection refused|timeout/i.test(stderr)) continue;
        throw new Error(`kubectl ${args.join(" ")}: ${stderr.trim()}`, { cause: err });
      }
      this.d.audit.recordManualScale(w);
      return `kubectl scale deployment/${w.name} -n ${w.namespace} --replicas=${to} (was ${current})`;
    }
  }

  private async longTopic(): Promise<string> {
    const w = this.d.rng.pick(this.d.workloads);
    const replies = await this.d.pools.get(w)!.joinLongTopics(LONG_TOPIC_CLIENTS, this.d.rng);
    return `${replies.length} client(s) of ${w.namespace}/${w.name} joined a 300-character topic outside the policy's groups (replies: ${replies.join(", ") || "none connected"})`;
  }
}
