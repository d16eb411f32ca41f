// The benchmark's results: their shape (also the shape of bench/results/latest.json), the
// targets they are judged against, and the table printed on stdout.

/** relay: the sidecar with --tap off (its relay code, nothing parsed): the floor of Node's cost. */
export const PATHS = ["direct", "relay", "sidecar", "nginx"] as const;
export type PathName = (typeof PATHS)[number];
export type ProxyName = Exclude<PathName, "direct">;

/** CPU use over a measured window, in % of one core (200 = both cores of a 2-core machine). */
export interface CpuUse {
  appPercent: number;
  /** The proxy of the path (nginx: master + worker); absent for the direct path. */
  proxyPercent?: number;
  clientsPercent: number;
  /** Every other busy CPU on the machine (other work, kernel softirq of loopback traffic). */
  othersPercent: number;
}

export interface ThroughputPath {
  roundTripsPerSecond: number;
  replies: number;
  badReplies: number;
  socketErrors: number;
  cpu: CpuUse;
  /** Proxy CPU time per round trip (both directions of one echo), in microseconds. */
  proxyCpuUsPerRoundTrip?: number;
}

export interface ThroughputResult {
  payloadBytes: number;
  sockets: number;
  depthPerSocket: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** The measured time is split into this many slices, interleaved with the other paths'. */
  rounds: number;
  paths: Record<PathName, ThroughputPath>;
  sidecarVsNginx: number;
  /** Proxy CPU per round trip, as ratios: the sidecar's to nginx's and to the bare relay's, the relay's to nginx's. */
  sidecarCpuVsNginx: number;
  sidecarCpuVsRelay: number;
  relayCpuVsNginx: number;
  sidecarVsDirect: number;
  nginxVsDirect: number;
}

export interface LatencyPath {
  samples: number;
  skippedTicks: number;
  badReplies: number;
  socketErrors: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  /** This path minus direct (absent for direct). */
  addedP50Us?: number;
  addedP99Us?: number;
  cpu: CpuUse;
}

export interface LatencyResult {
  sockets: number;
  pushesPerSecondPerSocket: number;
  payloadBytes: number;
  warmupSeconds: number;
  durationSeconds: number;
  rounds: number;
  paths: Record<PathName, LatencyPath>;
}

/** The sidecar's V8 heap and external (Buffer) memory, from its /metrics. */
export interface HeapSnapshot {
  heapUsedKiB: number;
  heapTotalKiB: number;
  externalKiB: number;
}

export interface IdleResult {
  proxy: ProxyName;
  requestedConnections: number;
  /** Connections opened and joined (below requested only when fd limits forced it). */
  connections: number;
  /** Why fewer than requested, if so. */
  limitedBy?: string;
  openSeconds: number;
  /** Sidecar: after a full GC (nginx has none). */
  rssBeforeKiB: number;
  /** Sidecar: after a full GC, the figure the target is judged on. */
  rssAtConnectionsKiB: number;
  /** Before that GC (the same as rssAtConnectionsKiB for nginx). */
  rssAtConnectionsNoGcKiB: number;
  rssAfterCloseKiB: number;
  perConnectionKiB: number;
  perConnectionNoGcKiB: number;
  proxyFdsAtConnections: number;
  appWebsocketConnections: number;
  appChannels: number;
  /** The sidecar's GET /stats at the end of the idle phase (topics summarised). */
  sidecarStats?: Record<string, unknown>;
  statsMatch?: boolean;
  sidecarHeap?: { before: HeapSnapshot; atConnections: HeapSnapshot };
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  met: boolean;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; sidecarNode: string; nginx: string; fdLimit: number; kernel: string };
  /** Busy CPU of the machine in the second before the run (other work), % of one core. */
  machineBusyBeforePercent: number;
  notes: string[];
  throughput: ThroughputResult[];
  latency: LatencyResult;
  idle: IdleResult[];
  targets: Target[];
  allTargetsMet: boolean;
  cpuProfile?: { file: string; top: HotFunction[] };
}

export interface HotFunction {
  selfPercent: number;
  functionName: string;
  location: string;
}

/** Nearest-rank percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const THROUGHPUT_TARGET = 0.8;
export const ADDED_P99_TARGET_US = 1000;
export const IDLE_KIB_TARGET = 12;
/** Issue 15: proxy CPU per message at 16 KiB ≤ 1.0× nginx's; at 100 B ≤ 1.2× the bare relay's. */
export const CPU_VS_NGINX_TARGET_16K = 1.0;
export const CPU_VS_RELAY_TARGET_100B = 1.2;

export function evaluateTargets(throughput: ThroughputResult[], latency: LatencyResult, idle: IdleResult[]): Target[] {
  const targets: Target[] = throughput.map((t) => ({
    name: `throughput ${sizeLabel(t.payloadBytes)}`,
    goal: `sidecar ≥ ${THROUGHPUT_TARGET}× nginx`,
    measured: `${t.sidecarVsNginx.toFixed(2)}× (${int(t.paths.sidecar.roundTripsPerSecond)} vs ${int(t.paths.nginx.roundTripsPerSecond)} rt/s)`,
    met: t.sidecarVsNginx >= THROUGHPUT_TARGET,
  }));
  for (const t of throughput) {
    const us = (p: PathName): string => (t.paths[p].proxyCpuUsPerRoundTrip ?? NaN).toFixed(1);
    if (t.payloadBytes >= 16 * 1024) {
      targets.push({
        name: `proxy CPU ${sizeLabel(t.payloadBytes)}`,
        goal: `sidecar ≤ ${CPU_VS_NGINX_TARGET_16K.toFixed(1)}× nginx`,
        measured: `${t.sidecarCpuVsNginx.toFixed(2)}× (${us("sidecar")} vs ${us("nginx")} µs/rt; bare relay ${us("relay")})`,
        met: t.sidecarCpuVsNginx <= CPU_VS_NGINX_TARGET_16K,
      });
    } else {
      targets.push({
        name: `proxy CPU ${sizeLabel(t.payloadBytes)}`,
        goal: `sidecar ≤ ${CPU_VS_RELAY_TARGET_100B.toFixed(1)}× bare relay`,
        measured: `${t.sidecarCpuVsRelay.toFixed(2)}× (${us("sidecar")} vs ${us("relay")} µs/rt; relay ${t.relayCpuVsNginx.toFixed(2)}× nginx's ${us("nginx")})`,
        met: t.sidecarCpuVsRelay <= CPU_VS_RELAY_TARGET_100B,
      });
    }
  }
  const added = latency.paths.sidecar.addedP99Us ?? NaN;
  targets.push({
    name: "added p99 latency",
    goal: `sidecar − direct ≤ ${ms(ADDED_P99_TARGET_US)}`,
    measured: `${ms(added)} (p99 ${ms(latency.paths.sidecar.p99Us)} vs ${ms(latency.paths.direct.p99Us)} direct)`,
    met: added <= ADDED_P99_TARGET_US,
  });
  const side = idle.find((i) => i.proxy === "sidecar");
  if (side !== undefined) {
    targets.push({
      name: "memory per idle connection",
      goal: `sidecar ≤ ${IDLE_KIB_TARGET} KiB`,
      measured: `${side.perConnectionKiB.toFixed(1)} KiB at ${int(side.connections)} connections`,
      met: side.perConnectionKiB <= IDLE_KIB_TARGET,
    });
  }
  return targets;
}

export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a";
}

export function ms(us: number): string {
  return Number.isFinite(us) ? `${(us / 1000).toFixed(3)} ms` : "n/a";
}

export function sizeLabel(bytes: number): string {
  return bytes >= 1024 && bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function pct(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? "—" : `${Math.round(n)}%`;
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [row(header, widths), row(widths.map((w) => "-".repeat(w)), widths), ...rows.map((r) => row(r, widths))].map((l) => `  ${l}`);
}

/** The human-readable report. */
export function formatReport(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push("", "=== connmeter sidecar benchmark: client → app direct | → bare relay (sidecar --tap off) → app | → sidecar → app | → nginx → app ===");
  out.push(`machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.kernel}, node ${m.node} (sidecar on ${m.sidecarNode}), ${m.nginx}, fd limit ${m.fdLimit}/process`);
  for (const n of r.notes) out.push(`note: ${n}`);

  const t0 = r.throughput[0];
  out.push("", t0 === undefined ? "Throughput: not measured" : `Throughput: echo round trips/s, ${t0.sockets} sockets × ${t0.depthPerSocket} pipelined pushes per path, ${t0.durationSeconds} s per path in ${t0.rounds} interleaved slices, after ${t0.warmupSeconds} s warm-up`);
  const trows: string[][] = [];
  for (const t of r.throughput) {
    for (const p of PATHS) {
      const x = t.paths[p];
      trows.push([
        `${sizeLabel(t.payloadBytes)} ${p}`,
        int(x.roundTripsPerSecond),
        p === "sidecar" ? `${t.sidecarVsNginx.toFixed(2)}×` : "",
        p === "direct" || p === "relay" ? "" : `${(p === "sidecar" ? t.sidecarVsDirect : t.nginxVsDirect).toFixed(2)}×`,
        pct(x.cpu.proxyPercent),
        x.proxyCpuUsPerRoundTrip === undefined ? "—" : x.proxyCpuUsPerRoundTrip.toFixed(1),
        p === "sidecar" ? `${t.sidecarCpuVsNginx.toFixed(2)}×` : p === "relay" ? `${t.relayCpuVsNginx.toFixed(2)}×` : "",
        p === "sidecar" ? `${t.sidecarCpuVsRelay.toFixed(2)}×` : "",
        pct(x.cpu.appPercent),
        pct(x.cpu.clientsPercent),
        pct(x.cpu.othersPercent),
        String(x.badReplies + x.socketErrors),
      ]);
    }
  }
  out.push(...table(["payload / path", "rt/s", "÷ nginx", "÷ direct", "proxy CPU", "proxy µs/rt", "µs ÷ nginx", "µs ÷ relay", "app CPU", "client CPU", "other CPU", "errors"], trows));

  const l = r.latency;
  out.push("", `Latency: ${l.sockets} sockets × ${l.pushesPerSecondPerSocket} sequential echo pushes/s (${int(l.sockets * l.pushesPerSecondPerSocket)} rt/s), ${sizeLabel(l.payloadBytes)}, ${l.durationSeconds} s per path in ${l.rounds} interleaved slices`);
  const lrows = PATHS.map((p) => {
    const x = l.paths[p];
    return [p, ms(x.p50Us), ms(x.p90Us), ms(x.p99Us), ms(x.maxUs), p === "direct" ? "—" : ms(x.addedP50Us ?? NaN), p === "direct" ? "—" : ms(x.addedP99Us ?? NaN), int(x.samples), pct(x.cpu.proxyPercent), pct(x.cpu.othersPercent)];
  });
  out.push(...table(["path", "p50", "p90", "p99", "max", "added p50", "added p99", "samples", "proxy CPU", "other CPU"], lrows));

  out.push("", "Memory: idle WebSockets held through each proxy (official phoenix client, each socket joined to its own topic)");
  const irows = r.idle.map((i) => [
    i.proxy,
    int(i.connections),
    `${(i.rssBeforeKiB / 1024).toFixed(1)} MiB`,
    `${(i.rssAtConnectionsKiB / 1024).toFixed(1)} MiB`,
    `${i.perConnectionKiB.toFixed(2)} KiB`,
    i.proxy === "sidecar" ? `${i.perConnectionNoGcKiB.toFixed(2)} KiB` : "—",
    `${(i.rssAfterCloseKiB / 1024).toFixed(1)} MiB`,
    `${i.openSeconds.toFixed(1)} s`,
  ]);
  out.push(...table(["proxy", "connections", "RSS before", "RSS at N", "per connection", "same, no GC", "RSS after close", "open time"], irows));
  for (const i of r.idle) if (i.limitedBy !== undefined) out.push(`  ${i.proxy}: ${int(i.connections)} of ${int(i.requestedConnections)} requested: ${i.limitedBy}`);
  const side = r.idle.find((i) => i.proxy === "sidecar");
  if (side?.sidecarHeap !== undefined) {
    const { before: b, atConnections: a } = side.sidecarHeap;
    const per = (x: number, y: number): string => `${((y - x) / Math.max(1, side.connections)).toFixed(2)} KiB/conn`;
    out.push(
      "  the sidecar's RSS is read after a full GC (node --expose-gc, a SIGUSR2 hook preloaded by the bench), before and at N, so ramp garbage does not count; 'same, no GC' is the raw figure.",
      `  sidecar V8 heap used ${(b.heapUsedKiB / 1024).toFixed(1)} → ${(a.heapUsedKiB / 1024).toFixed(1)} MiB (${per(b.heapUsedKiB, a.heapUsedKiB)}), heap reserved ${(b.heapTotalKiB / 1024).toFixed(1)} → ${(a.heapTotalKiB / 1024).toFixed(1)} MiB (${per(b.heapTotalKiB, a.heapTotalKiB)}), external ${(b.externalKiB / 1024).toFixed(1)} → ${(a.externalKiB / 1024).toFixed(1)} MiB (${per(b.externalKiB, a.externalKiB)}); the rest of the RSS growth is native (libuv/kernel-facing socket state, malloc) and heap pages not yet returned`,
    );
  }
  if (side?.sidecarStats !== undefined) {
    out.push(`  sidecar GET /stats at the end of the idle phase: ${JSON.stringify(side.sidecarStats)}`);
    out.push(`  expected connections = channels = ${int(side.connections)}; app saw ${int(side.appWebsocketConnections)} sockets, ${int(side.appChannels)} channels: ${side.statsMatch === true ? "counts right" : "COUNTS WRONG"}`);
  }

  out.push("", "Targets");
  out.push(...table(["target", "goal", "measured", "verdict"], r.targets.map((t) => [t.name, t.goal, t.measured, t.met ? "MET" : "NOT MET"])));

  if (r.cpuProfile !== undefined) {
    out.push("", `Sidecar CPU profile of the load phases (${r.cpuProfile.file}), top functions by self time:`);
    out.push(...table(["self", "function", "where"], r.cpuProfile.top.map((h) => [`${h.selfPercent.toFixed(1)}%`, h.functionName, h.location])));
  }
  out.push("", `took ${r.durationSeconds.toFixed(0)} s; JSON in bench/results/latest.json`);
  return out.join("\n");
}
