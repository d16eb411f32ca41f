// Memory per idle connection: a fresh app and a fresh proxy, a short warm-up, then N sockets
// of the official phoenix client, each joined to its own topic and left idle, opened from
// several load-worker processes; the proxy's VmRSS before and at N gives KiB per connection.
import { performance } from "node:perf_hooks";
import type { ClientKind } from "./bench-protocol.js";
import { collectGarbage, GC_ON_SIGNAL_ARGS, LoadWorker, openFds, rssKiB, type Service, startApp, startSidecar } from "./bench-procs.js";
import type { HeapSnapshot, IdleResult, ProxyName } from "./bench-report.js";
import { startNginx } from "./nginx-proxy.js";

/** fds a proxy may need beyond two per proxied connection (admin requests, logs, accept races). */
const FD_HEADROOM = 32;
const WARMUP_SOCKETS = 100;
const SETTLE_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface OpenedWorkers {
  workers: LoadWorker[];
  joined: number;
  failed: number;
  firstError?: string;
}

/** Forks one worker per entry of `counts` and has each open and join that many sockets. */
export async function openWorkers(
  baseUrl: string,
  client: ClientKind,
  counts: number[],
  topicPrefix: string,
  concurrency: number,
  timeoutMs: number,
  requireAll: boolean,
): Promise<OpenedWorkers> {
  const workers = counts.map((_, i) => new LoadWorker(i));
  try {
    let firstIndex = 0;
    const reports = await Promise.all(
      workers.map((w, i) => {
        const sockets = counts[i]!;
        const cmd = { type: "open", client, baseUrl, sockets, topicPrefix, firstIndex, concurrency, timeoutMs } as const;
        firstIndex += sockets;
        return w.request(cmd, "opened", timeoutMs * Math.ceil(sockets / concurrency) + 30_000);
      }),
    );
    const joined = reports.reduce((s, r) => s + r.joined, 0);
    const failed = reports.reduce((s, r) => s + r.failed, 0);
    const firstError = reports.find((r) => r.firstError !== undefined)?.firstError;
    if (requireAll && failed > 0) throw new Error(`${failed} of ${joined + failed} sockets to ${baseUrl} failed to open or join; first: ${firstError}`);
    return { workers, joined, failed, ...(firstError === undefined ? {} : { firstError }) };
  } catch (err) {
    await Promise.all(workers.map((w) => w.stop()));
    throw err;
  }
}

/** Closes every worker's sockets (close handshakes), then ends the workers. */
export async function closeWorkers(opened: OpenedWorkers): Promise<void> {
  await Promise.all(opened.workers.map((w) => w.request({ type: "close" }, "closed", 30_000).catch(() => undefined)));
  await Promise.all(opened.workers.map((w) => w.stop()));
}

/** The sidecar's GET /stats, with its topic map summarised (10,000 topics would flood the report). */
export async function idleCounts(adminUrl: string): Promise<Record<string, unknown>> {
  const stats = (await (await fetch(`${adminUrl}/stats`, { signal: AbortSignal.timeout(5000) })).json()) as Record<string, unknown>;
  const topics = (stats.topics ?? {}) as Record<string, number>;
  const values = Object.values(topics);
  return {
    ...stats,
    topics: { labels: values.length, channelsSummed: values.reduce((s, n) => s + n, 0), _other: topics._other ?? 0 },
  };
}

/** The sidecar's own view of its memory, from the process metrics on its admin port. */
export async function sidecarMemory(adminUrl: string): Promise<HeapSnapshot> {
  const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const kib = (name: string): number => {
    const m = new RegExp(`^connmeter_${name} (\\S+)$`, "m").exec(text);
    return m === null ? NaN : Number(m[1]) / 1024;
  };
  return { heapUsedKiB: kib("nodejs_heap_size_used_bytes"), heapTotalKiB: kib("nodejs_heap_size_total_bytes"), externalKiB: kib("nodejs_external_memory_bytes") };
}

export async function appCounts(appUrl: string): Promise<{ sockets: number; channels: number }> {
  const body = (await (await fetch(`${appUrl}/count`, { signal: AbortSignal.timeout(5000) })).json()) as { count: number; websocket_connections: number };
  return { sockets: body.websocket_connections, channels: body.count };
}

async function waitForCounts(read: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (await read().catch(() => false)) return true;
    if (performance.now() > until) return false;
    await sleep(100);
  }
}

export interface IdleOptions {
  proxy: ProxyName;
  requested: number;
  workers: number;
  maxFds: number;
  nginxDir: string;
  progress: (msg: string) => void;
}

function rssOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + rssKiB(pid), 0);
}

export async function measureIdle(o: IdleOptions): Promise<IdleResult> {
  const app = await startApp();
  const services: Service[] = [app];
  try {
    let url: string;
    let pids: () => number[];
    let adminUrl: string | undefined;
    // The sidecar can be asked for a full GC, so that its RSS is read without ramp garbage.
    let fullGc = (): Promise<void> => Promise.resolve();
    if (o.proxy === "sidecar") {
      const sidecar = await startSidecar(app.url, GC_ON_SIGNAL_ARGS);
      services.push(sidecar);
      ({ url, adminUrl } = sidecar);
      pids = () => [sidecar.pid];
      fullGc = async () => {
        await collectGarbage(sidecar);
        await sleep(500);
      };
    } else {
      const nginx = await startNginx(o.nginxDir, app.url, o.maxFds);
      services.push(nginx);
      url = nginx.url;
      pids = () => nginx.pids();
    }
    o.progress(`idle ${o.proxy}: warm-up with ${WARMUP_SOCKETS} sockets`);
    await closeWorkers(await openWorkers(url, "official", [WARMUP_SOCKETS], "room:warm:", 50, 10_000, true));
    await sleep(1000);
    await fullGc();
    const rssBeforeKiB = rssOf(pids());
    const heapBefore = adminUrl === undefined ? undefined : await sidecarMemory(adminUrl);
    const ownFds = Math.max(...pids().map(openFds));
    const byFds = Math.floor((o.maxFds - ownFds - FD_HEADROOM) / 2);
    const target = Math.min(o.requested, byFds);
    const limitedBy = target < o.requested ? `open-files limit ${o.maxFds}/process: 2 fds per proxied connection + ${ownFds} of the proxy's own + ${FD_HEADROOM} headroom` : undefined;
    o.progress(`idle ${o.proxy}: RSS ${(rssBeforeKiB / 1024).toFixed(1)} MiB; opening ${target} sockets (official client, ${o.workers} processes)${limitedBy === undefined ? "" : ` — ${limitedBy}`}`);

    const t0 = performance.now();
    const share = Array.from({ length: o.workers }, (_, i) => Math.floor(target / o.workers) + (i < target % o.workers ? 1 : 0));
    const opened = await openWorkers(url, "official", share, "room:idle:", 50, 20_000, false);
    const openSeconds = (performance.now() - t0) / 1000;
    const n = opened.joined;
    o.progress(`idle ${o.proxy}: ${n} joined in ${openSeconds.toFixed(1)} s${opened.failed > 0 ? `, ${opened.failed} failed (first: ${opened.firstError})` : ""}`);
    try {
      const countsRight = await waitForCounts(async () => {
        const a = await appCounts(app.url);
        if (a.sockets !== n || a.channels !== n) return false;
        if (adminUrl === undefined) return true;
        const s = await idleCounts(adminUrl);
        return s.connections === n && s.channels === n;
      }, 20_000);
      await sleep(SETTLE_MS);
      const rssNoGcKiB = rssOf(pids());
      await fullGc();
      const rssAtConnectionsKiB = rssOf(pids());
      const proxyFdsAtConnections = Math.max(...pids().map(openFds));
      const sidecarStats = adminUrl === undefined ? undefined : await idleCounts(adminUrl);
      const heapAt = adminUrl === undefined ? undefined : await sidecarMemory(adminUrl);
      const appAt = await appCounts(app.url);
      const perConnectionKiB = (rssAtConnectionsKiB - rssBeforeKiB) / Math.max(1, n);
      const perConnectionNoGcKiB = (rssNoGcKiB - rssBeforeKiB) / Math.max(1, n);
      const gcNote = adminUrl === undefined ? "" : ` after a full GC (${perConnectionNoGcKiB.toFixed(2)} KiB before it)`;
      o.progress(`idle ${o.proxy}: RSS ${(rssAtConnectionsKiB / 1024).toFixed(1)} MiB at ${n} → ${perConnectionKiB.toFixed(2)} KiB/connection${gcNote}; closing`);
      await closeWorkers(opened);
      await sleep(1000);
      const result: IdleResult = {
        proxy: o.proxy,
        requestedConnections: o.requested,
        connections: n,
        openSeconds,
        rssBeforeKiB,
        rssAtConnectionsKiB,
        rssAtConnectionsNoGcKiB: rssNoGcKiB,
        rssAfterCloseKiB: rssOf(pids()),
        perConnectionKiB,
        perConnectionNoGcKiB,
        proxyFdsAtConnections,
        appWebsocketConnections: appAt.sockets,
        appChannels: appAt.channels,
        statsMatch: countsRight,
      };
      if (limitedBy !== undefined) result.limitedBy = limitedBy;
      if (sidecarStats !== undefined) result.sidecarStats = sidecarStats;
      if (heapBefore !== undefined && heapAt !== undefined) result.sidecarHeap = { before: heapBefore, atConnections: heapAt };
      return result;
    } finally {
      await closeWorkers(opened);
    }
  } finally {
    await Promise.all(services.reverse().map((s) => s.stop()));
  }
}
