// `make bench`: the sidecar benchmark. Four paths on this machine in one run:
//   direct   client → app
//   relay    client → connmeter sidecar with --tap off (its relay code, nothing parsed) → app
//   sidecar  client → connmeter sidecar → app
//   nginx    client → nginx (plain WebSocket reverse proxy, one worker) → app
// and, per path: echo round trips/s at 100 B and 16 KiB with many pipelining sockets; p50/p99
// round-trip latency at a moderate fixed rate; then, per proxy, resident memory per idle
// joined connection at 10,000 connections (or as many as the fd limit allows).
//
// The app is the Phoenix-protocol test server (dist/test/support/phoenix-server-main.js); the
// clients run in forked load-worker processes. Every loop is bounded in time; every child is
// killed at the end. Prints progress and a table; writes bench/results/latest.json.
//
// Knobs (env): BENCH_DURATION_S (5 measured seconds per path and measurement, in BENCH_ROUNDS (5)
// interleaved slices), BENCH_WARMUP_S (1.5), BENCH_SOCKETS (200), BENCH_DEPTH (4),
// BENCH_LATENCY_SOCKETS (50), BENCH_LATENCY_RATE (20 pushes/s per socket), BENCH_IDLE (10000; 0 skips
// the idle phase), BENCH_PAYLOADS (message sizes of the throughput phase, "100,16384"),
// BENCH_LOAD_WORKERS (2), BENCH_IDLE_WORKERS (4), BENCH_CPU_PROF (1 = profile the sidecar),
// BENCH_TMP (temp dir, default a new one), BENCH_PID_FILE (children's pids, for run.sh's trap),
// BENCH_SIDECAR_NODE (node binary running the sidecar, to compare runtimes; default this one).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { fdLimit, killAllChildren, machineBusySeconds, recordPidsIn, SIDECAR_NODE } from "./bench-procs.js";
import { type BenchResults, evaluateTargets, formatReport, type IdleResult, PATHS, type ProxyName } from "./bench-report.js";
import { hotFunctions } from "./cpu-profile.js";
import { measureIdle } from "./idle-phase.js";
import { type LoadConfig, type LoadResults, runLoadPhases } from "./load-phases.js";
import { nginxVersion } from "./nginx-proxy.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RESULTS_DIR = join(REPO_ROOT, "bench", "results");

function envNumber(name: string, fallback: number, zeroAllowed = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroAllowed)) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

function envSizes(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const sizes = raw.split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 11)) throw new Error(`${name} must be comma-separated message sizes of at least 11 bytes, got "${raw}"`);
  return sizes;
}

const CPU_PROFILE_DIR = join(RESULTS_DIR, "cpuprof");

const CFG = {
  warmupMs: envNumber("BENCH_WARMUP_S", 1.5) * 1000,
  durationMs: envNumber("BENCH_DURATION_S", 5) * 1000,
  rounds: Math.round(envNumber("BENCH_ROUNDS", 5)),
  sliceWarmupMs: 300,
  sockets: Math.round(envNumber("BENCH_SOCKETS", 200)),
  depth: Math.round(envNumber("BENCH_DEPTH", 4)),
  payloads: envSizes("BENCH_PAYLOADS", [100, 16 * 1024]),
  latencySockets: Math.round(envNumber("BENCH_LATENCY_SOCKETS", 50)),
  latencyRate: envNumber("BENCH_LATENCY_RATE", 20),
  latencyPayload: 100,
  idleConnections: Math.round(envNumber("BENCH_IDLE", 10_000, true)),
  loadWorkers: Math.round(envNumber("BENCH_LOAD_WORKERS", 2)),
  idleWorkers: Math.round(envNumber("BENCH_IDLE_WORKERS", 4)),
  cpuProfileDir: process.env.BENCH_CPU_PROF === "1" ? CPU_PROFILE_DIR : undefined,
  /** Whole run; past it the driver kills everything and fails. */
  deadlineMs: envNumber("BENCH_DEADLINE_S", 540) * 1000,
} satisfies LoadConfig & Record<string, unknown>;

const started = performance.now();

function progress(msg: string): void {
  console.log(`[bench +${((performance.now() - started) / 1000).toFixed(0).padStart(3)}s] ${msg}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Busy CPU of the whole machine over one second, in % of one core (others' work before we start). */
async function machineBusyPercent(): Promise<number> {
  const a = machineBusySeconds();
  await sleep(1000);
  return 100 * (machineBusySeconds() - a);
}

function readProfile(dir: string): BenchResults["cpuProfile"] {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  const file = files[0];
  if (file === undefined) return undefined;
  return { file: file.slice(REPO_ROOT.length), top: hotFunctions(file, 15) };
}

function notes(load: LoadResults, maxFds: number, idle: IdleResult[]): string[] {
  const windows = [...load.throughput.flatMap((t) => PATHS.map((p) => t.paths[p].cpu)), ...PATHS.map((p) => load.latency.paths[p].cpu)];
  const busiest = Math.max(...windows.map((c) => c.othersPercent));
  const out = [
    "nginx runs worker_processes 1 (one worker, plus its idle master): fair against the sidecar, which is one Node event loop.",
    `load generator: ${CFG.loadWorkers} forked processes with a lean vsn 2.0.0 client on ws (their CPU is 'client CPU', not the proxy's); idle phase: the official phoenix JS client in ${CFG.idleWorkers} processes.`,
    "relay is a second sidecar process run with --tap off: the same forwarding code, no frame parsing or counting; sidecar µs ÷ relay µs is the tap's price, relay µs ÷ nginx µs the price of relaying in Node.",
    `client, proxy and app share ${cpus().length} cores: a proxied path takes CPU from the app and the client, so throughput ratios include the proxy's CPU cost; 'proxy µs/rt' is the proxy's own CPU per echo round trip (CPU % = share of one core).`,
    "memory: VmRSS of the proxy process (nginx: master + worker) after a 100-socket warm-up, then with every socket open, joined and idle; per connection = (at N − before) / N. nginx allocates its connection table (worker_connections) at start, so that fixed cost sits in 'before'.",
    `after the load phases the sidecar's /stats read ${JSON.stringify(load.sidecarAfter)} (every load socket closed: expect 0 connections, 0 channels, 0 unparsed).`,
  ];
  if (CFG.cpuProfileDir !== undefined) out.push("BENCH_CPU_PROF=1: the load-phase sidecar ran under node --cpu-prof, so its throughput and latency include the profiler's overhead.");
  if (busiest > 30) out.push(`CPU outside the benchmark's processes reached ${Math.round(busiest)}% of a core in a measured window ('other CPU': other work on this machine plus kernel softirq time of loopback traffic): compare paths with that in mind, or rerun on a quiet machine.`);
  if (idle.some((i) => i.limitedBy !== undefined)) out.push(`the per-process open-files limit here is ${maxFds} and cannot be raised (no CAP_SYS_RESOURCE); a proxy holds 2 fds per proxied connection, so fewer than ${CFG.idleConnections} idle connections were measured.`);
  return out;
}

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    console.error(`bench: still running after ${CFG.deadlineMs / 1000} s; killing every child and failing`);
    killAllChildren();
    process.exit(1);
  }, CFG.deadlineMs);
  deadline.unref();
  recordPidsIn(process.env.BENCH_PID_FILE);
  const nginx = nginxVersion();
  if (nginx === undefined) throw new Error("nginx is not installed: run bench/run.sh (it installs nginx with apt-get)");
  const maxFds = fdLimit();
  const tmp = process.env.BENCH_TMP ?? mkdtempSync(join(tmpdir(), "connmeter-bench-"));
  mkdirSync(RESULTS_DIR, { recursive: true });
  const startedAt = new Date().toISOString();
  progress(`${cpus().length} cores, node ${process.version}, ${nginx}, open-files limit ${maxFds}, temp dir ${tmp}`);
  const busyBefore = await machineBusyPercent();
  progress(`machine CPU busy before the run: ${busyBefore.toFixed(0)}% of one core${busyBefore > 30 ? " — other work is running here; paths are interleaved so it weighs on each alike" : ""}`);

  const load = await runLoadPhases(CFG, tmp, maxFds, progress);
  const profile = CFG.cpuProfileDir === undefined ? undefined : readProfile(CFG.cpuProfileDir);
  const idle: IdleResult[] = [];
  for (const proxy of (CFG.idleConnections > 0 ? ["sidecar", "nginx"] : []) as ProxyName[]) {
    idle.push(await measureIdle({ proxy, requested: CFG.idleConnections, workers: CFG.idleWorkers, maxFds, nginxDir: join(tmp, "nginx-idle"), progress }));
  }
  const targets = evaluateTargets(load.throughput, load.latency, idle);
  const results: BenchResults = {
    startedAt,
    finishedAt: new Date().toISOString(),
    durationSeconds: (performance.now() - started) / 1000,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? "unknown",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      sidecarNode: execFileSync(SIDECAR_NODE, ["--version"], { encoding: "utf8" }).trim(),
      nginx,
      fdLimit: maxFds,
      kernel: `Linux ${release()}`,
    },
    machineBusyBeforePercent: busyBefore,
    notes: notes(load, maxFds, idle),
    throughput: load.throughput,
    latency: load.latency,
    idle,
    targets,
    allTargetsMet: targets.every((t) => t.met),
  };
  if (profile !== undefined) results.cpuProfile = profile;
  writeFileSync(join(RESULTS_DIR, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log(formatReport(results));
  if (process.env.BENCH_TMP === undefined) rmSync(tmp, { recursive: true, force: true });
}

process.on("exit", killAllChildren);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`bench: ${signal}: killing every child`);
    killAllChildren();
    process.exit(130);
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
