// The soak's findings: one verdict per invariant (measured, target, pass/fail), a table per
// operator replica, printed and written as JSON with every sample for later reading.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { ChurnCounts } from "./policy-churn.js";
import type { ClientCounts } from "./client-pool.js";
import { REBUDGET_WAIT_MS, type FaultLogEntry, type PlannedFault, type RebudgetRecord } from "./faults.js";
import type { Replica } from "./operator-fleet.js";
import type { StatusRecord } from "./quiescence.js";
import type { ScaleRecord } from "./scale-audit.js";
import type { CapRecord } from "./sidecar-sampler.js";
import type { SoakConfig } from "./soak-config.js";
import { cpuTrend, memoryTrend, trendOk, type Trend } from "./trend.js";

export const HEALTHZ_TARGET = 0.999;
const MIB = 1024 * 1024;

export interface Verdict {
  invariant: string;
  measured: string;
  target: string;
  ok: boolean;
}

export interface ReplicaSummary {
  name: string;
  pid: number;
  lifeS: [number, number | null];
  exit: string;
  samples: number;
  cpuPercent: { first?: number; last?: number; max?: number; trend: Trend };
  /** Highest share of wall time it was runnable (on a CPU or waiting for one), %. */
  maxRunnablePercent?: number;
  heapMiB: { first?: number; last?: number; max?: number; trend: Trend };
  /** Resident memory from /proc (its /metrics goes silent when it is stuck; /proc does not). */
  rssMiB: { first?: number; last?: number; max?: number; trend: Trend };
  healthz: { polls: number; answered: number };
}

export interface SoakFindings {
  config: SoakConfig;
  durationS: { total: number; setup: number; faults: number; settle: number };
  plan: PlannedFault[];
  faults: FaultLogEntry[];
  rebudgets: RebudgetRecord[];
  churn: ChurnCounts;
  clients: Record<string, ClientCounts>;
  caps: CapRecord[];
  scale: { rows: ScaleRecord[]; metricTotal: number };
  status: StatusRecord[];
  replicas: Replica[];
  deploymentsSettled: boolean;
}

const r1 = (n: number | undefined) => (n === undefined ? undefined : Math.round(n * 10) / 10);

function firstLastMax(values: readonly number[]): { first?: number; last?: number; max?: number } {
  if (values.length === 0) return {};
  return { first: r1(values[0]), last: r1(values[values.length - 1]), max: r1(Math.max(...values)) };
}

export function summarizeReplica(r: Replica): ReplicaSummary {
  const defined = <T>(v: (T | undefined)[]) => v.filter((x): x is T => x !== undefined);
  const cpu = defined(r.samples.map((s) => s.cpuPercent));
  const runnable = defined(r.samples.map((s) => s.runnablePercent));
  const heap = defined(r.samples.map((s) => s.heapUsedBytes));
  const rss = defined(r.samples.map((s) => s.procRssBytes ?? s.rssBytes));
  return {
    name: r.name, pid: r.pid, lifeS: [r.startedAtS, r.endedAtS ?? null],
    exit: r.exitCause === "exited" ? `exited (code ${r.exitCode})` : (r.exitCause ?? "running"),
    samples: r.samples.length,
    cpuPercent: { ...firstLastMax(cpu), trend: cpuTrend(cpu, runnable) },
    maxRunnablePercent: firstLastMax(runnable).max,
    heapMiB: { ...firstLastMax(heap.map((b) => b / MIB)), trend: memoryTrend(heap) },
    rssMiB: { ...firstLastMax(rss.map((b) => b / MIB)), trend: memoryTrend(rss) },
    healthz: { ...r.health },
  };
}

/** One verdict per invariant and workload. */
export function verdicts(f: SoakFindings, replicas: readonly ReplicaSummary[]): Verdict[] {
  const out: Verdict[] = [];
  for (const c of f.caps) {
    const over = c.samplesOver ? `, ${c.samplesOver} of ${c.samples} samples over (max at ${c.maxAtS} s: ${JSON.stringify(c.maxByPod)})` : `, 0 of ${c.samples} samples over`;
    out.push({ invariant: `cluster cap ${c.workload}`, measured: `max ${c.maxConnections}/${c.cap} = ${c.maxRatio.toFixed(2)}${over}`, target: "≤ 1.00", ok: c.samplesOver === 0 });
  }
  for (const s of f.scale.rows) {
    out.push({
      invariant: `scale writes applied twice ${s.workload}`,
      measured: `${s.appliedTwice} (operator wrote ${s.operatorWrites}, applied ${s.operatorApplied}, events ${s.events}; manual ${s.manualScales}; unexplained ${s.unexplained})`,
      target: "0", ok: s.appliedTwice === 0 && s.unexplained === 0,
    });
  }
  for (const s of f.status) {
    const unanswered = s.unanswered.length ? `; unanswered: ${s.unanswered.join(", ")}` : "";
    out.push({
      invariant: `status exact at quiescence ${s.workload}`,
      measured: `status ${s.statusConnections ?? "-"} conn / ${s.statusChannels ?? "-"} ch, sidecars ${s.sidecarConnections ?? "-"} / ${s.sidecarChannels ?? "-"}${unanswered}`,
      target: "equal", ok: s.exact,
    });
  }
  if (f.rebudgets.length > 0) {
    const late = f.rebudgets.filter((r) => r.seconds === null);
    const worst = Math.max(0, ...f.rebudgets.map((r) => r.seconds ?? 0));
    out.push({
      invariant: "killed sidecars budgeted again",
      measured: late.length
        ? `${late.length} of ${f.rebudgets.length} not within ${REBUDGET_WAIT_MS / 1000} s: ${late.map((r) => r.pod).join(", ")}`
        : `${f.rebudgets.length} of ${f.rebudgets.length}, worst after ${worst} s (kill, restart, next push)`,
      target: `each within ${REBUDGET_WAIT_MS / 1000} s`, ok: late.length === 0,
    });
  }
  const judged = (pick: (r: ReplicaSummary) => Trend) => replicas.filter((r) => pick(r) !== "short");
  const bad = (pick: (r: ReplicaSummary) => Trend) => replicas.filter((r) => !trendOk(pick(r)));
  const memoryTrendOf = (r: ReplicaSummary): Trend => (r.heapMiB.trend === "growing" || r.rssMiB.trend === "growing" ? "growing"
    : r.heapMiB.trend === "short" && r.rssMiB.trend === "short" ? "short" : "flat");
  const memoryBad = bad(memoryTrendOf);
  const worstRss = Math.max(0, ...memoryBad.map((r) => r.rssMiB.max ?? 0));
  const worstHeap = Math.max(0, ...memoryBad.map((r) => r.heapMiB.max ?? 0));
  out.push({
    invariant: "operator heap and RSS flat (per replica)",
    measured: memoryBad.length
      ? `${memoryBad.length} of ${replicas.length} replicas growing (up to heap ${worstHeap} MiB, RSS ${worstRss} MiB): ${names(memoryBad)}`
      : `${judged(memoryTrendOf).length} of ${replicas.length} replica(s) lived long enough to judge; all flat`,
    target: "flat", ok: memoryBad.length === 0,
  });
  const cpuBad = bad((r) => r.cpuPercent.trend);
  const busy = cpuBad.filter((r) => r.cpuPercent.trend === "busy");
  out.push({
    invariant: "operator CPU flat (per replica)",
    measured: cpuBad.length
      ? `${busy.length} of ${replicas.length} replicas busy-looping (runnable ≥ 90 % for 15 s; CPU up to ${Math.max(0, ...cpuBad.map((r) => r.cpuPercent.max ?? 0))} % of a core), ${cpuBad.length - busy.length} growing: ${names(cpuBad)}`
      : `${replicas.length} replica(s), none busy, ${judged((r) => r.cpuPercent.trend).length} lived long enough to judge; all flat`,
    target: "flat; never runnable ≥ 90 % for 15 s", ok: cpuBad.length === 0,
  });
  const polls = replicas.reduce((n, r) => n + r.healthz.polls, 0);
  const answered = replicas.reduce((n, r) => n + r.healthz.answered, 0);
  const ratio = polls ? answered / polls : 0;
  out.push({
    invariant: "operator /healthz answered",
    measured: `${(ratio * 100).toFixed(2)} % (${answered}/${polls} polls every 200 ms, 1 s timeout)`,
    target: `≥ ${(HEALTHZ_TARGET * 100).toFixed(1)} %`, ok: polls > 0 && ratio >= HEALTHZ_TARGET,
  });
  return out;
}

const names = (rs: readonly ReplicaSummary[]) => rs.map((r) => r.name).join(", ");

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export function formatVerdicts(vs: readonly Verdict[]): string {
  return table(["invariant", "target", "verdict", "measured"], vs.map((v) => [v.invariant, v.target, v.ok ? "ok" : "FAIL", v.measured]));
}

export function formatReplicas(rs: readonly ReplicaSummary[]): string {
  const flm = (x: { first?: number; last?: number; max?: number }) => `${x.first ?? "-"} / ${x.last ?? "-"} / ${x.max ?? "-"}`;
  return table(
    ["replica", "life (s)", "exit", "CPU % first/last/max", "trend", "heap MiB first/last/max", "trend", "RSS MiB first/last/max", "trend", "healthz"],
    rs.map((r) => [
      r.name, `${r.lifeS[0]}–${r.lifeS[1] ?? "end"}`, r.exit, flm(r.cpuPercent), r.cpuPercent.trend, flm(r.heapMiB), r.heapMiB.trend, flm(r.rssMiB), r.rssMiB.trend,
      r.healthz.polls ? `${((r.healthz.answered / r.healthz.polls) * 100).toFixed(1)} % of ${r.healthz.polls}` : "-",
    ]),
  );
}

/** Writes the JSON report (every sample included). */
export function writeReport(path: string, f: SoakFindings, replicas: readonly ReplicaSummary[], vs: readonly Verdict[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const json = {
    ok: vs.every((v) => v.ok), verdicts: vs, replicas,
    config: f.config, durationS: f.durationS, deploymentsSettled: f.deploymentsSettled,
    faults: f.faults, plan: f.plan, churn: f.churn, clients: f.clients, caps: f.caps, scale: f.scale, status: f.status,
    replicaSamples: Object.fromEntries(f.replicas.map((r) => [r.name, r.samples])),
  };
  writeFileSync(path, `${JSON.stringify(json, null, 1)}\n`);
}
