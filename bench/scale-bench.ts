// `make bench-scale` (bench/run.sh scale): many joined sockets through one sidecar on loopback.
// BENCH_SCALE_SOCKETS (50,000) sockets, each joined to 2 channels, opened by raw-TCP client
// processes (bench/scale-client.ts); 1 % of them push one echo per second. While they are held
// for BENCH_SCALE_HOLD_S (300) seconds, every BENCH_SCALE_SAMPLE_S (10) seconds: how long GET
// /stats and GET /metrics take, the sidecar's RSS and V8 heap used, then a full GC (a SIGUSR2
// hook preloaded into the sidecar, as the idle phase of make bench does) and the heap used after
// it: the live heap, whose least-squares slope over the hold is the heap trend (a leak shows as
// a steady climb; the first sample, right after the ramp, is left out). At the end: /stats against
// the app's own counts (exact: connections = N, channels = 2N), then every socket closes and
// the counts must reach 0. A proxied socket costs the sidecar 2 fds: past the open-files
// limit, the run is scaled down to what fits and says so. Prints a table; writes
// bench/results/scale.json. Every child is ended at the end or on a signal.
// BENCH_SCALE_CPU_PROF=<dir> runs the sidecar under node --cpu-prof (the profile is written there at its exit).
import { fork } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { collectGarbage, fdLimit, GC_ON_SIGNAL_ARGS, killAllChildren, recordPid, recordPidsIn, rssKiB, type Service, startApp, startSidecar } from "./bench-procs.js";
import { appCounts } from "./idle-phase.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const REQUESTED = env("BENCH_SCALE_SOCKETS", 50_000);
const HOLD_S = env("BENCH_SCALE_HOLD_S", 300);
const SAMPLE_S = env("BENCH_SCALE_SAMPLE_S", 10);
const ACTIVE_PERCENT = 1;
/** fds the sidecar needs beyond two per socket (listeners, admin requests, logs). */
const FD_HEADROOM = 64;
const PER_CLIENT_PROCESS = 10_000;
const PER_SOURCE_ADDRESS = 25_000;

interface Sample {
  atS: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** V8 heap used right after a full GC: the live heap. */
  heapAfterGcMiB: number;
  statsMs: number;
  metricsMs: number;
}

const started = performance.now();
const log = (m: string): void => console.log(`[scale +${((performance.now() - started) / 1000).toFixed(0).padStart(4)}s] ${m}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function timed(url: string): Promise<{ ms: number; body: string }> {
  const t0 = performance.now();
  const body = await (await fetch(url, { signal: AbortSignal.timeout(30_000) })).text();
  return { ms: performance.now() - t0, body };
}

function metric(page: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)`, "m").exec(page);
  return m === null ? NaN : Number(m[1]);
}

/** The admin latencies first (a GC would delay them), then the live heap after a full GC. */
async function sample(sidecar: Service, adminUrl: string): Promise<Sample> {
  const stats = await timed(`${adminUrl}/stats`);
  const metrics = await timed(`${adminUrl}/metrics`);
  const atS = (performance.now() - started) / 1000;
  const rssMiB = rssKiB(sidecar.pid) / 1024;
  const heapAfterGcMiB = (await collectGarbage(sidecar)) / 2 ** 20;
  return {
    atS,
    rssMiB,
    heapUsedMiB: metric(metrics.body, "connmeter_nodejs_heap_size_used_bytes") / 2 ** 20,
    heapAfterGcMiB,
    statsMs: stats.ms,
    metricsMs: metrics.ms,
  };
}

/** Least-squares slope of y over x (NaN with fewer than 2 points). */
function slope(points: [x: number, y: number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  recordPidsIn(process.env.BENCH_PID_FILE);
  const limit = fdLimit();
  const sockets = Math.min(REQUESTED, Math.floor((limit - FD_HEADROOM) / 2));
  const limitedBy = sockets < REQUESTED ? `open-files limit ${limit} per process (2 fds per proxied socket in the sidecar); raising it needs CAP_SYS_RESOURCE here` : undefined;
  const active = Math.max(1, Math.round((sockets * ACTIVE_PERCENT) / 100));
  log(`${cpus().length} cores, node ${process.version}, open-files limit ${limit}: ${sockets} sockets × 2 channels${limitedBy ? ` (of ${REQUESTED} requested: ${limitedBy})` : ""}, ${active} active, held ${HOLD_S} s; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  const app = await startApp();
  const profileDir = process.env.BENCH_SCALE_CPU_PROF;
  const sidecar = await startSidecar(app.url, [...GC_ON_SIGNAL_ARGS, ...(profileDir === undefined || profileDir === "" ? [] : ["--cpu-prof", "--cpu-prof-dir", profileDir])]);
  const clients: ReturnType<typeof fork>[] = [];
  const samples: Sample[] = [];
  try {
    const sources = Math.ceil(sockets / PER_SOURCE_ADDRESS);
    const procs = Math.ceil(sockets / PER_CLIENT_PROCESS);
    const t0 = performance.now();
    const opened = await Promise.all(
      Array.from({ length: procs }, (_, p) => {
        const first = p * PER_CLIENT_PROCESS;
        const count = Math.min(PER_CLIENT_PROCESS, sockets - first);
        const share = Math.round((active * count) / sockets);
        const child = fork(join(REPO_ROOT, "dist/bench/scale-client.js"), [sidecar.url, String(count), String(first), String(share), String(sources)], { stdio: "inherit" });
        recordPid(child.pid!);
        clients.push(child);
        return once(child, "message").then(([m]) => m as { joined: number; failed: number });
      }),
    );
    const joined = opened.reduce((s, o) => s + o.joined, 0);
    const failed = opened.reduce((s, o) => s + o.failed, 0);
    log(`${joined} sockets joined to 2 channels each (${failed} failed) in ${((performance.now() - t0) / 1000).toFixed(1)} s; holding`);
    const holdUntil = performance.now() + HOLD_S * 1000;
    do {
      const s = await sample(sidecar, sidecar.adminUrl);
      samples.push(s);
      log(`RSS ${s.rssMiB.toFixed(0)} MiB, heap used ${s.heapUsedMiB.toFixed(1)} MiB (${s.heapAfterGcMiB.toFixed(1)} after a full GC), GET /stats ${s.statsMs.toFixed(0)} ms, GET /metrics ${s.metricsMs.toFixed(0)} ms`);
      await sleep(Math.max(0, Math.min(SAMPLE_S * 1000, holdUntil - performance.now())));
    } while (performance.now() < holdUntil);
    const stats = JSON.parse((await timed(`${sidecar.adminUrl}/stats`)).body) as { connections: number; channels: number };
    const appAt = await appCounts(app.url);
    const exact = stats.connections === joined && stats.channels === 2 * joined && appAt.sockets === joined && appAt.channels === 2 * joined;
    log(`at the end: sidecar /stats connections ${stats.connections}, channels ${stats.channels}; app ${appAt.sockets} sockets, ${appAt.channels} channels; expected ${joined} and ${2 * joined}: ${exact ? "exact" : "WRONG"}`);
    const stopped = await Promise.all(clients.map(async (c) => {
      c.send("stop");
      const [m] = await once(c, "message");
      return m as { pushes: number; replies: number };
    }));
    let after = { connections: -1, channels: -1 };
    for (let i = 0; i < 100 && (after.connections !== 0 || after.channels !== 0); i++) {
      await sleep(200);
      after = JSON.parse((await timed(`${sidecar.adminUrl}/stats`)).body) as typeof after;
    }
    const pushes = stopped.reduce((s, x) => s + x.pushes, 0);
    const replies = stopped.reduce((s, x) => s + x.replies, 0);
    const max = (f: (s: Sample) => number): number => Math.max(...samples.map(f));
    const first = samples[0];
    const last = samples.at(-1);
    // The trend leaves out the first sample (taken right after the ramp); MiB per minute.
    const held = samples.slice(1);
    const heapSlope = slope(held.map((s) => [s.atS / 60, s.heapAfterGcMiB]));
    const rssSlope = slope(held.map((s) => [s.atS / 60, s.rssMiB]));
    const result = {
      at: new Date().toISOString(),
      node: process.version,
      cores: cpus().length,
      requested: REQUESTED,
      sockets,
      ...(limitedBy === undefined ? {} : { limitedBy }),
      joined,
      failed,
      active,
      holdSeconds: HOLD_S,
      pushes,
      replies,
      samples,
      maxRssMiB: max((s) => s.rssMiB),
      heapUsedFirstMiB: first?.heapUsedMiB,
      heapUsedLastMiB: last?.heapUsedMiB,
      heapAfterGcFirstMiB: held[0]?.heapAfterGcMiB,
      heapAfterGcLastMiB: last?.heapAfterGcMiB,
      heapAfterGcSlopeMiBPerMinute: heapSlope,
      rssSlopeMiBPerMinute: rssSlope,
      maxStatsMs: max((s) => s.statsMs),
      medianStatsMs: median(samples.map((s) => s.statsMs)),
      maxMetricsMs: max((s) => s.metricsMs),
      medianMetricsMs: median(samples.map((s) => s.metricsMs)),
      countsExact: exact,
      afterClose: after,
    };
    mkdirSync(join(REPO_ROOT, "bench", "results"), { recursive: true });
    writeFileSync(join(REPO_ROOT, "bench", "results", "scale.json"), `${JSON.stringify(result, null, 2)}\n`);
    console.log(
      [
        "",
        `=== ${joined} sockets × 2 channels through one sidecar, ${active} pushing 1 echo/s, held ${HOLD_S} s ===`,
        ...(limitedBy === undefined ? [] : [`scaled down from ${REQUESTED}: ${limitedBy}`]),
        `sidecar RSS: max ${result.maxRssMiB.toFixed(0)} MiB (goal < 512 MiB at 50,000)`,
        `V8 heap used: ${first?.heapUsedMiB.toFixed(1)} → ${last?.heapUsedMiB.toFixed(1)} MiB over the hold (${samples.length} samples)`,
        held.length < 2
          ? `V8 heap after a full GC: ${last?.heapAfterGcMiB.toFixed(1)} MiB (no trend: hold longer than two sample intervals)`
          : `V8 heap after a full GC: ${held[0]!.heapAfterGcMiB.toFixed(1)} → ${last!.heapAfterGcMiB.toFixed(1)} MiB, slope ${heapSlope.toFixed(3)} MiB/min over ${held.length} samples (RSS ${rssSlope.toFixed(3)} MiB/min; goal: flat)`,
        `GET /stats median ${result.medianStatsMs.toFixed(0)} ms, worst ${result.maxStatsMs.toFixed(0)} ms; GET /metrics median ${result.medianMetricsMs.toFixed(0)} ms, worst ${result.maxMetricsMs.toFixed(0)} ms (goal < 100 ms; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} at the end)`,
        `echo pushes ${pushes}, replies ${replies}`,
        `counts at the end: ${exact ? "exact" : "WRONG"} (sidecar ${stats.connections}/${stats.channels}, app ${appAt.sockets}/${appAt.channels}); after every socket closed: ${after.connections} connections, ${after.channels} channels`,
      ].join("\n"),
    );
    if (!exact || after.connections !== 0 || after.channels !== 0) process.exitCode = 1;
  } finally {
    for (const c of clients) c.kill();
    await sidecar.stop();
    await app.stop();
  }
}

process.on("exit", killAllChildren);
main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(`scale bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
