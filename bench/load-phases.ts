// Throughput and latency on the three paths (direct, sidecar, nginx) with one app, one
// sidecar and one nginx. The paths are measured in interleaved slices (round r runs every path
// once, in an order rotated by r) so that other work on the machine, which comes and goes,
// weighs on every path alike instead of on whichever ran during a busy spell.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { cpuSeconds, machineBusySeconds, type Service, startApp, startSidecar } from "./bench-procs.js";
import {
  type CpuUse,
  type LatencyPath,
  type LatencyResult,
  PATHS,
  type PathName,
  percentile,
  type ThroughputPath,
  type ThroughputResult,
} from "./bench-report.js";
import { closeWorkers, idleCounts, type OpenedWorkers, openWorkers } from "./idle-phase.js";
import { startNginx } from "./nginx-proxy.js";

export interface LoadConfig {
  /** Once per path before its first slice (JIT, buffers, connection pools). */
  warmupMs: number;
  /** Measured time per path and measurement, split over `rounds` slices. */
  durationMs: number;
  rounds: number;
  /** Unmeasured start of every slice (the pipeline fills). */
  sliceWarmupMs: number;
  sockets: number;
  depth: number;
  payloads: number[];
  latencySockets: number;
  latencyRate: number;
  latencyPayload: number;
  loadWorkers: number;
  /** Where the sidecar writes its CPU profile (`node --cpu-prof`), if one is wanted. */
  cpuProfileDir: string | undefined;
}

export interface LoadResults {
  throughput: ThroughputResult[];
  latency: LatencyResult;
  /** The sidecar's /stats once every load socket is closed. */
  sidecarAfter: Record<string, unknown>;
}

interface PathTarget {
  name: PathName;
  url: string;
  appPid: number;
  proxyPids: () => number[];
}

/** CPU seconds used over measured windows, summed over slices. */
interface CpuTotals {
  seconds: number;
  app: number;
  proxy: number;
  clients: number;
  machine: number;
}

const NO_CPU: CpuTotals = { seconds: 0, app: 0, proxy: 0, clients: 0, machine: 0 };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

function cpuOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

function addCpu(a: CpuTotals, b: CpuTotals): CpuTotals {
  return { seconds: a.seconds + b.seconds, app: a.app + b.app, proxy: a.proxy + b.proxy, clients: a.clients + b.clients, machine: a.machine + b.machine };
}

function cpuUse(t: CpuTotals, path: PathName): CpuUse {
  const pct = (x: number): number => (t.seconds > 0 ? (100 * x) / t.seconds : NaN);
  const use: CpuUse = {
    appPercent: pct(t.app),
    clientsPercent: pct(t.clients),
    othersPercent: Math.max(0, pct(t.machine - t.app - t.proxy - t.clients)),
  };
  if (path !== "direct") use.proxyPercent = pct(t.proxy);
  return use;
}

/** CPU time of app, proxy, clients and the machine over [now + startMs, now + startMs + lengthMs]. */
async function sampleCpu(path: PathTarget, clientPids: number[], startMs: number, lengthMs: number): Promise<CpuTotals> {
  await sleep(startMs);
  const read = (): CpuTotals => ({
    seconds: performance.now() / 1000,
    app: cpuSeconds(path.appPid),
    proxy: cpuOf(path.proxyPids()),
    clients: cpuOf(clientPids),
    machine: machineBusySeconds(),
  });
  const a = read();
  await sleep(lengthMs);
  const b = read();
  return { seconds: b.seconds - a.seconds, app: b.app - a.app, proxy: b.proxy - a.proxy, clients: b.clients - a.clients, machine: b.machine - a.machine };
}

/** Round r visits every path, starting at path r mod 3. */
function roundOrder<T>(items: readonly T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

interface SliceTotals {
  replies: number;
  badReplies: number;
  socketErrors: number;
  measuredMs: number;
  cpu: CpuTotals;
}

async function throughputSlice(path: PathTarget, group: OpenedWorkers, cfg: LoadConfig, payloadBytes: number, warmupMs: number, durationMs: number): Promise<SliceTotals> {
  const cmd = { type: "throughput", payloadBytes, depth: cfg.depth, warmupMs, durationMs } as const;
  const [reports, cpu] = await Promise.all([
    Promise.all(group.workers.map((w) => w.request(cmd, "throughput-done", warmupMs + durationMs + 15_000))),
    sampleCpu(path, group.workers.map((w) => w.pid), warmupMs, durationMs),
  ]);
  return {
    replies: reports.reduce((s, r) => s + r.replies, 0),
    badReplies: reports.reduce((s, r) => s + r.badReplies, 0),
    socketErrors: reports.reduce((s, r) => s + r.socketErrors, 0),
    measuredMs: durationMs,
    cpu,
  };
}

function toThroughputPath(t: SliceTotals, path: PathName): ThroughputPath {
  const rps = t.replies / (t.measuredMs / 1000);
  const cpu = cpuUse(t.cpu, path);
  const result: ThroughputPath = { roundTripsPerSecond: rps, replies: t.replies, badReplies: t.badReplies, socketErrors: t.socketErrors, cpu };
  if (path !== "direct" && rps > 0) result.proxyCpuUsPerRoundTrip = (t.cpu.proxy / (t.cpu.seconds * rps)) * 1e6;
  return result;
}

function ratio(a: number, b: number): number {
  return b > 0 ? a / b : NaN;
}

async function measureThroughput(paths: PathTarget[], groups: Map<PathName, OpenedWorkers>, cfg: LoadConfig, payloadBytes: number, progress: (m: string) => void): Promise<ThroughputResult> {
  const sliceMs = cfg.durationMs / cfg.rounds;
  progress(`throughput ${payloadBytes} B: ${cfg.sockets} sockets × ${cfg.depth} in flight per path; warm-up ${cfg.warmupMs / 1000} s per path, then ${cfg.rounds} rounds × ${sliceMs / 1000} s per path`);
  for (const path of paths) await throughputSlice(path, groups.get(path.name)!, cfg, payloadBytes, 0, cfg.warmupMs);
  const totals = new Map<PathName, SliceTotals>(PATHS.map((p) => [p, { replies: 0, badReplies: 0, socketErrors: 0, measuredMs: 0, cpu: NO_CPU }]));
  for (let round = 0; round < cfg.rounds; round++) {
    const line: string[] = [];
    for (const path of roundOrder(paths, round)) {
      const s = await throughputSlice(path, groups.get(path.name)!, cfg, payloadBytes, cfg.sliceWarmupMs, sliceMs);
      const t = totals.get(path.name)!;
      totals.set(path.name, { replies: t.replies + s.replies, badReplies: t.badReplies + s.badReplies, socketErrors: t.socketErrors + s.socketErrors, measuredMs: t.measuredMs + s.measuredMs, cpu: addCpu(t.cpu, s.cpu) });
      line.push(`${path.name} ${Math.round(s.replies / (sliceMs / 1000))}`);
    }
    progress(`  round ${round + 1}/${cfg.rounds} rt/s: ${line.join(", ")}`);
  }
  const byPath = Object.fromEntries(PATHS.map((p) => [p, toThroughputPath(totals.get(p)!, p)])) as Record<PathName, ThroughputPath>;
  for (const p of PATHS) {
    const x = byPath[p];
    progress(`  ${p}: ${Math.round(x.roundTripsPerSecond)} rt/s (CPU: proxy ${x.cpu.proxyPercent?.toFixed(0) ?? "-"}%, app ${x.cpu.appPercent.toFixed(0)}%, clients ${x.cpu.clientsPercent.toFixed(0)}%, other ${x.cpu.othersPercent.toFixed(0)}%; errors ${x.badReplies + x.socketErrors})`);
  }
  return {
    payloadBytes,
    sockets: cfg.sockets,
    depthPerSocket: cfg.depth,
    warmupSeconds: cfg.warmupMs / 1000,
    durationSeconds: cfg.durationMs / 1000,
    rounds: cfg.rounds,
    paths: byPath,
    sidecarVsNginx: ratio(byPath.sidecar.roundTripsPerSecond, byPath.nginx.roundTripsPerSecond),
    sidecarCpuVsNginx: ratio(byPath.sidecar.proxyCpuUsPerRoundTrip ?? NaN, byPath.nginx.proxyCpuUsPerRoundTrip ?? NaN),
    sidecarCpuVsRelay: ratio(byPath.sidecar.proxyCpuUsPerRoundTrip ?? NaN, byPath.relay.proxyCpuUsPerRoundTrip ?? NaN),
    relayCpuVsNginx: ratio(byPath.relay.proxyCpuUsPerRoundTrip ?? NaN, byPath.nginx.proxyCpuUsPerRoundTrip ?? NaN),
    sidecarVsDirect: ratio(byPath.sidecar.roundTripsPerSecond, byPath.direct.roundTripsPerSecond),
    nginxVsDirect: ratio(byPath.nginx.roundTripsPerSecond, byPath.direct.roundTripsPerSecond),
  };
}

interface LatencySlice {
  samplesUs: number[];
  skipped: number;
  badReplies: number;
  socketErrors: number;
  cpu: CpuTotals;
}

async function latencySlice(path: PathTarget, group: OpenedWorkers, cfg: LoadConfig, warmupMs: number, durationMs: number): Promise<LatencySlice> {
  const cmd = { type: "latency", payloadBytes: cfg.latencyPayload, ratePerSocket: cfg.latencyRate, warmupMs, durationMs } as const;
  const [reports, cpu] = await Promise.all([
    Promise.all(group.workers.map((w) => w.request(cmd, "latency-done", warmupMs + durationMs + 15_000))),
    sampleCpu(path, group.workers.map((w) => w.pid), warmupMs, durationMs),
  ]);
  return {
    samplesUs: reports.flatMap((r) => r.samplesUs),
    skipped: reports.reduce((s, r) => s + r.skipped, 0),
    badReplies: reports.reduce((s, r) => s + r.badReplies, 0),
    socketErrors: reports.reduce((s, r) => s + r.socketErrors, 0),
    cpu,
  };
}

function toLatencyPath(slices: LatencySlice[], path: PathName): LatencyPath {
  const samples = slices.flatMap((s) => s.samplesUs).sort((a, b) => a - b);
  return {
    samples: samples.length,
    skippedTicks: slices.reduce((s, x) => s + x.skipped, 0),
    badReplies: slices.reduce((s, x) => s + x.badReplies, 0),
    socketErrors: slices.reduce((s, x) => s + x.socketErrors, 0),
    p50Us: percentile(samples, 50),
    p90Us: percentile(samples, 90),
    p99Us: percentile(samples, 99),
    maxUs: samples.at(-1) ?? NaN,
    meanUs: samples.reduce((s, x) => s + x, 0) / Math.max(1, samples.length),
    cpu: cpuUse(slices.reduce((a, s) => addCpu(a, s.cpu), NO_CPU), path),
  };
}

async function measureLatency(paths: PathTarget[], groups: Map<PathName, OpenedWorkers>, cfg: LoadConfig, progress: (m: string) => void): Promise<LatencyResult> {
  const sliceMs = cfg.durationMs / cfg.rounds;
  progress(`latency: ${cfg.latencySockets} sockets × ${cfg.latencyRate}/s sequential echo pushes per path; ${cfg.rounds} rounds × ${sliceMs / 1000} s per path`);
  for (const path of paths) await latencySlice(path, groups.get(path.name)!, cfg, 0, Math.min(cfg.warmupMs, 1000));
  const slices = new Map<PathName, LatencySlice[]>(PATHS.map((p) => [p, []]));
  for (let round = 0; round < cfg.rounds; round++) {
    for (const path of roundOrder(paths, round)) slices.get(path.name)!.push(await latencySlice(path, groups.get(path.name)!, cfg, 200, sliceMs));
  }
  const byPath = Object.fromEntries(PATHS.map((p) => [p, toLatencyPath(slices.get(p)!, p)])) as Record<PathName, LatencyPath>;
  for (const p of PATHS) {
    const x = byPath[p];
    if (p !== "direct") {
      x.addedP50Us = x.p50Us - byPath.direct.p50Us;
      x.addedP99Us = x.p99Us - byPath.direct.p99Us;
    }
    progress(`  ${p}: p50 ${(x.p50Us / 1000).toFixed(3)} ms, p99 ${(x.p99Us / 1000).toFixed(3)} ms over ${x.samples} round trips (other CPU ${x.cpu.othersPercent.toFixed(0)}%)`);
  }
  return {
    sockets: cfg.latencySockets,
    pushesPerSecondPerSocket: cfg.latencyRate,
    payloadBytes: cfg.latencyPayload,
    warmupSeconds: Math.min(cfg.warmupMs, 1000) / 1000,
    durationSeconds: cfg.durationMs / 1000,
    rounds: cfg.rounds,
    paths: byPath,
  };
}

function assertAlive(services: Service[]): void {
  for (const s of services) {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) throw new Error(`${s.name} died (${s.proc.signalCode ?? `code ${s.proc.exitCode}`}):\n${s.tail()}`);
  }
}

/** Opens `sockets` lean sockets per path, each path's in its own load-worker processes. */
async function openGroups(paths: PathTarget[], cfg: LoadConfig, sockets: number, prefix: string): Promise<Map<PathName, OpenedWorkers>> {
  const groups = new Map<PathName, OpenedWorkers>();
  try {
    for (const path of paths) groups.set(path.name, await openWorkers(path.url, "lean", split(sockets, cfg.loadWorkers), prefix, 50, 10_000, true));
  } catch (err) {
    await Promise.all([...groups.values()].map(closeWorkers));
    throw err;
  }
  return groups;
}

export async function runLoadPhases(cfg: LoadConfig, tmp: string, maxFds: number, progress: (m: string) => void): Promise<LoadResults> {
  if (cfg.cpuProfileDir !== undefined) rmSync(cfg.cpuProfileDir, { recursive: true, force: true });
  const app = await startApp();
  const services: Service[] = [app];
  try {
    const sidecar = await startSidecar(app.url, cfg.cpuProfileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", cfg.cpuProfileDir]);
    services.push(sidecar);
    // The floor: the sidecar's own relay code with the tap off (bytes forwarded, nothing parsed).
    const relay = await startSidecar(app.url, [], ["--tap", "off"], "relay");
    services.push(relay);
    const nginx = await startNginx(join(tmp, "nginx-load"), app.url, maxFds);
    services.push(nginx);
    progress(`load phases: app pid ${app.pid} ${app.url}, sidecar pid ${sidecar.pid} ${sidecar.url}, bare relay (sidecar --tap off) pid ${relay.pid} ${relay.url}, nginx pid ${nginx.pid} ${nginx.url}`);
    const paths: PathTarget[] = [
      { name: "direct", url: app.url, appPid: app.pid, proxyPids: () => [] },
      { name: "relay", url: relay.url, appPid: app.pid, proxyPids: () => [relay.pid] },
      { name: "sidecar", url: sidecar.url, appPid: app.pid, proxyPids: () => [sidecar.pid] },
      { name: "nginx", url: nginx.url, appPid: app.pid, proxyPids: () => nginx.pids() },
    ];
    const throughput: ThroughputResult[] = [];
    let groups = await openGroups(paths, cfg, cfg.sockets, "room:tp:");
    try {
      for (const payloadBytes of cfg.payloads) {
        assertAlive(services);
        throughput.push(await measureThroughput(paths, groups, cfg, payloadBytes, progress));
      }
    } finally {
      await Promise.all([...groups.values()].map(closeWorkers));
    }
    assertAlive(services);
    groups = await openGroups(paths, cfg, cfg.latencySockets, "room:lat:");
    let latency: LatencyResult;
    try {
      latency = await measureLatency(paths, groups, cfg, progress);
    } finally {
      await Promise.all([...groups.values()].map(closeWorkers));
    }
    assertAlive(services);
    // The last close handshakes may still be in flight: give the counts a moment to reach 0.
    let sidecarAfter = await idleCounts(sidecar.adminUrl);
    for (let i = 0; i < 50 && sidecarAfter.connections !== 0; i++) {
      await sleep(100);
      sidecarAfter = await idleCounts(sidecar.adminUrl);
    }
    return { throughput, latency, sidecarAfter };
  } finally {
    // The sidecar writes its CPU profile as it exits.
    await Promise.all(services.reverse().map((s) => s.stop()));
  }
}
