// Two operator replicas with leader election, as processes (test/env/operator-process.ts)
// watching all namespaces, run the way a Deployment with the chart's probes runs them: a
// replica that exits is started again (a new identity, like a new container), and one whose
// /healthz fails 3 times in a row, 10 s apart, is killed and started again, as the chart's
// livenessProbe would. The leader is found by the Lease's holder, never by asking the replicas.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startOperator, type OperatorProcess } from "../env/operator-process.js";
import type { SoakKube } from "./soak-kube.js";
import { errText, sleep, sleepUnless } from "./soak-log.js";
import { LEASE_NAME, SYSTEM_NAMESPACE } from "./workloads.js";

/** The chart's livenessProbe on /healthz (values.yaml: period 10 s, timeout 2 s, 3 failures). */
const LIVENESS = { periodMs: 10_000, timeoutMs: 2_000, failureThreshold: 3 };
/** A crashed container's first restart back-off on a kubelet is 10 s; the local node agent's is 1 s. */
const RESTART_DELAY_MS = 2_000;

export type ExitCause = "leader-kill" | "liveness" | "exited" | "stopped";

/** One operator process, from start to exit, and what was measured of it. */
export interface Replica {
  readonly name: string;
  readonly slot: string;
  readonly handle: OperatorProcess;
  readonly pid: number;
  readonly startedAtS: number;
  endedAtS?: number;
  exitCause?: ExitCause;
  exitCode?: number | null;
  /** Filled by the OperatorSampler. */
  samples: ResourceSample[];
  health: { polls: number; answered: number };
  /** Highest connmeter_operator_scale_actions_total (up + down) it reported. */
  scaleActions: number;
}

export interface ResourceSample {
  atS: number;
  /** CPU over the last interval, % of one core (from /proc/<pid>/stat). */
  cpuPercent: number | undefined;
  /**
   * Time on a CPU or waiting for one over the last interval, % of the wall time (from
   * /proc/<pid>/schedstat): near 100 for a process that never yields, whatever else the
   * machine runs, where its CPU % depends on how many others share the cores.
   */
  runnablePercent: number | undefined;
  /** From /proc/<pid>/stat. */
  procRssBytes: number | undefined;
  /** From its /metrics (undefined when it did not answer in time). */
  rssBytes: number | undefined;
  heapUsedBytes: number | undefined;
}

export class OperatorFleet {
  readonly replicas: Replica[] = [];
  private readonly generation = new Map<string, number>();
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private readonly stopSignal = new AbortController();

  /** `logDir` gets every replica's log as `<name>.log` when it exits (emptied first). */
  constructor(
    private readonly k: SoakKube,
    private readonly token: string,
    private readonly logDir: string,
    private readonly log: (line: string) => void,
    private readonly elapsedS: () => number,
  ) {
    rmSync(logDir, { recursive: true, force: true });
    mkdirSync(logDir, { recursive: true });
  }

  /** Replicas running now. */
  live(): Replica[] {
    return this.replicas.filter((r) => r.endedAtS === undefined);
  }

  /** Starts the two replicas (slots a and b) and the liveness probe. */
  async start(): Promise<void> {
    await Promise.all(["a", "b"].map((slot) => this.launch(slot)));
    this.loops.push(this.livenessLoop(this.stopSignal.signal));
  }

  /** The replica holding the Lease now, if it is one of ours and alive. */
  async leader(): Promise<Replica | undefined> {
    const lease = await this.k.coordination.readNamespacedLease({ name: LEASE_NAME, namespace: SYSTEM_NAMESPACE });
    const holder = lease.spec?.holderIdentity ?? "";
    return this.live().find((r) => holder.startsWith(`${r.name}_`));
  }

  /** Waits (bounded) until a live replica holds the Lease. */
  async waitForLeader(timeoutMs: number): Promise<Replica> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.leader().catch(() => undefined);
      if (l) return l;
      if (Date.now() > deadline) throw new Error(`no replica holds Lease ${SYSTEM_NAMESPACE}/${LEASE_NAME} after ${timeoutMs / 1000} s`);
      await sleep(500);
    }
  }

  /**
   * SIGKILLs the replica holding the Lease (a crash: the Lease is not released); a new one
   * starts in its slot. `before` runs first (the sampler reads its last counters).
   */
  async killLeader(before: (r: Replica) => Promise<void>): Promise<string> {
    const leader = await this.leader();
    if (!leader) return "no live replica holds the Lease (skipped)";
    await before(leader);
    await this.end(leader, "leader-kill");
    return `killed leader ${leader.name} (pid ${leader.pid}) with SIGKILL`;
  }

  /** Stops every replica with SIGTERM (graceful), then SIGKILL after 10 s. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    this.stopSignal.abort();
    await Promise.all(this.live().map(async (r) => {
      r.exitCause = "stopped";
      const killer = setTimeout(() => r.handle.child.kill("SIGKILL"), 10_000);
      await r.handle.stop("SIGTERM");
      clearTimeout(killer);
    }));
    await Promise.all(this.loops);
  }

  private async launch(slot: string): Promise<void> {
    const n = (this.generation.get(slot) ?? 0) + 1;
    this.generation.set(slot, n);
    const name = `op-${slot}-${n}`;
    const handle = await startOperator({
      kubeconfig: this.k.kubeconfig, namespace: "", leaderElectionNamespace: SYSTEM_NAMESPACE, leaderElect: true, token: this.token, name,
    });
    const replica: Replica = {
      name, slot, handle, pid: handle.child.pid!, startedAtS: this.elapsedS(), samples: [], health: { polls: 0, answered: 0 }, scaleActions: 0,
    };
    this.replicas.push(replica);
    this.log(`operator: started replica ${name} (pid ${replica.pid}, health :${handle.ports.health}, metrics :${handle.ports.metrics})`);
    void handle.exited.then((code) => this.onExit(replica, code));
  }

  /** Kills a replica on purpose (its cause recorded first, so onExit knows). */
  private async end(r: Replica, cause: ExitCause): Promise<void> {
    r.exitCause = cause;
    await r.handle.stop("SIGKILL");
  }

  private onExit(r: Replica, code: number | null): void {
    r.endedAtS = this.elapsedS();
    r.exitCode = code;
    writeFileSync(join(this.logDir, `${r.name}.log`), r.handle.logs());
    if (!r.exitCause) {
      r.exitCause = "exited";
      this.log(`operator: replica ${r.name} exited by itself (code ${code}); its last log lines:\n${tail(r.handle.logs(), 3)}`);
    }
    if (this.stopping) return;
    void sleep(RESTART_DELAY_MS).then(() => (this.stopping ? undefined : this.launch(r.slot)))
      .catch((err: unknown) => this.log(`operator: restarting slot ${r.slot} failed: ${errText(err)}`));
  }

  private async livenessLoop(signal: AbortSignal): Promise<void> {
    const failures = new Map<Replica, number>();
    while (!signal.aborted) {
      await sleepUnless(LIVENESS.periodMs, signal);
      if (signal.aborted) break;
      await Promise.all(this.live().map(async (r) => {
        if (this.elapsedS() - r.startedAtS < 5) return; // initialDelaySeconds
        const ok = await healthz(r, LIVENESS.timeoutMs);
        const n = ok ? 0 : (failures.get(r) ?? 0) + 1;
        failures.set(r, n);
        if (n >= LIVENESS.failureThreshold && r.endedAtS === undefined) {
          this.log(`operator: replica ${r.name} failed its liveness probe ${n} times (/healthz, timeout ${LIVENESS.timeoutMs / 1000} s): killing it, as the kubelet would`);
          await this.end(r, "liveness");
        }
      }));
    }
  }
}

/** GET /healthz of a replica: true when it answers 200 within `timeoutMs`. */
export async function healthz(r: Replica, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${r.handle.ports.health}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).map((l) => `    ${l.slice(0, 300)}`).join("\n");
}
