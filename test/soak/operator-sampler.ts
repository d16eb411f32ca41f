// Watches the operator replicas from outside: GET /healthz every 200 ms (answered = 200
// within 1 s), and every 5 s its CPU and resident memory from /proc/<pid>/stat and its own
// /metrics (process_resident_memory_bytes, nodejs_heap_size_used_bytes, scale actions).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { healthz, type OperatorFleet, type Replica } from "./operator-fleet.js";
import { sleepUnless } from "./soak-log.js";

export const HEALTH_POLL_MS = 200;
const HEALTH_TIMEOUT_MS = 1_000;
export const RESOURCE_SAMPLE_MS = 5_000;
const METRICS_TIMEOUT_MS = 2_000;

const CLK_TCK = clockTicks();
const PAGE_SIZE = 4096;

function clockTicks(): number {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
}

/** CPU ticks (user + system) and resident bytes of a process, from /proc/<pid>/stat. */
export function procStat(pid: number): { ticks: number; rssBytes: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces): state is field 3.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ticks: Number(rest[11]) + Number(rest[12]), rssBytes: Number(rest[21]) * PAGE_SIZE };
  } catch {
    return undefined;
  }
}

/** Nanoseconds a process spent on a CPU plus waiting on a run queue, from /proc/<pid>/schedstat. */
export function runnableNs(pid: number): number | undefined {
  try {
    const [onCpu, waiting] = readFileSync(`/proc/${pid}/schedstat`, "utf8").trim().split(" ").map(Number);
    return onCpu! + waiting!;
  } catch {
    return undefined;
  }
}

/** A metric's value from Prometheus text, with or without the operator's `connmeter_operator_` prefix. */
export function metricValue(text: string, name: string): number | undefined {
  const m = new RegExp(`^(?:connmeter_operator_)?${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Sum of every series of a metric (e.g. scale actions over both directions). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) sum += Number(m[1]);
  return sum;
}

const round1 = (n: number | undefined) => (n === undefined ? undefined : Math.round(n * 10) / 10);

export class OperatorSampler {
  private readonly lastTicks = new Map<Replica, { ticks: number; runnableNs: number | undefined; atMs: number }>();

  constructor(private readonly fleet: OperatorFleet, private readonly elapsedS: () => number) {}

  /** Both loops until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.healthLoop(signal), this.resourceLoop(signal)]);
  }

  /** Scrapes one replica's /metrics now (before a deliberate kill, so its last counts are kept). */
  async sampleResources(r: Replica): Promise<void> {
    const now = Date.now();
    const stat = procStat(r.pid);
    const runnable = runnableNs(r.pid);
    const prev = this.lastTicks.get(r);
    let cpuPercent: number | undefined;
    let runnablePercent: number | undefined;
    if (stat && prev) {
      const wallS = (now - prev.atMs) / 1000;
      cpuPercent = ((stat.ticks - prev.ticks) / CLK_TCK) / wallS * 100;
      if (runnable !== undefined && prev.runnableNs !== undefined) runnablePercent = Math.min(100, (runnable - prev.runnableNs) / 1e9 / wallS * 100);
    }
    if (stat) this.lastTicks.set(r, { ticks: stat.ticks, runnableNs: runnable, atMs: now });
    let text = "";
    try {
      const res = await fetch(`http://127.0.0.1:${r.handle.ports.metrics}/metrics`, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) });
      text = await res.text();
    } catch {
      // frozen or gone: recorded as a sample without metrics
    }
    r.scaleActions = Math.max(r.scaleActions, metricSum(text, "connmeter_operator_scale_actions_total"));
    if (!stat && !text) return;
    r.samples.push({
      atS: this.elapsedS(), cpuPercent: round1(cpuPercent), runnablePercent: round1(runnablePercent),
      procRssBytes: stat?.rssBytes, rssBytes: metricValue(text, "process_resident_memory_bytes"),
      heapUsedBytes: metricValue(text, "nodejs_heap_size_used_bytes"),
    });
  }

  private async healthLoop(signal: AbortSignal): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    while (!signal.aborted) {
      const t0 = Date.now();
      for (const r of this.fleet.live()) {
        const p = healthz(r, HEALTH_TIMEOUT_MS).then((ok) => {
          // A replica the soak killed meanwhile is not held against it.
          if (r.exitCause === "leader-kill" || r.exitCause === "stopped") return;
          r.health.polls++;
          if (ok) r.health.answered++;
        });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
      await sleepUnless(Math.max(0, HEALTH_POLL_MS - (Date.now() - t0)), signal);
    }
    await Promise.all(inFlight);
  }

  private async resourceLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const t0 = Date.now();
      await Promise.all(this.fleet.live().map((r) => this.sampleResources(r)));
      await sleepUnless(Math.max(0, RESOURCE_SAMPLE_MS - (Date.now() - t0)), signal);
    }
  }
}
