// A load-generator process, forked by the benchmark driver (sidecar-bench.ts) so that client
// CPU never counts as the proxy's. It obeys the commands of bench-protocol.ts over IPC and
// exits when the driver goes away. Every loop here stops by itself after its duration.
import { performance } from "node:perf_hooks";
import { Socket } from "phoenix";
import WebSocket from "ws";
import type { LatencyCommand, OpenCommand, ThroughputCommand, WorkerCommand, WorkerReport } from "./bench-protocol.js";
import { echoPayloadJson, LeanPhoenixSocket } from "./lean-client.js";

/** How long a finished loop waits for its last replies before it reports. */
const DRAIN_MS = 3000;

let leanSockets: LeanPhoenixSocket[] = [];
let officialSockets: Socket[] = [];

function report(msg: WorkerReport): void {
  process.send?.(msg);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!check() && performance.now() < until) await sleep(10);
}

/** What a `ws` ErrorEvent (or anything else thrown at us) says. */
function eventText(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null) {
    const { message, error } = e as { message?: unknown; error?: unknown };
    if (error instanceof Error) return error.message;
    if (typeof message === "string") return message;
  }
  return String(e);
}

/** `ws` without permessage-deflate, as the official client's transport on Node. */
class PlainWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { perMessageDeflate: false });
  }
}

/** The official phoenix JS client: connects, joins `topic`, never reconnects. */
function openOfficial(baseUrl: string, topic: string, timeoutMs: number): Promise<Socket> {
  const socket = new Socket(`${baseUrl.replace(/^http/, "ws")}/socket`, {
    transport: PlainWebSocket as unknown as typeof globalThis.WebSocket,
    vsn: "2.0.0",
    timeout: timeoutMs,
    reconnectAfterMs: () => 3_600_000,
    rejoinAfterMs: () => 3_600_000,
    heartbeatIntervalMs: 30_000,
  } as ConstructorParameters<typeof Socket>[1]);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) return resolve(socket);
      socket.disconnect();
      reject(err);
    };
    const timer = setTimeout(() => settle(new Error(`join ${topic} timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.onError((e: unknown) => settle(new Error(`socket error before join: ${eventText(e)}`)));
    socket.connect();
    socket
      .channel(topic, {})
      .join(timeoutMs)
      .receive("ok", () => settle())
      .receive("error", (resp: unknown) => settle(new Error(`join ${topic} refused: ${JSON.stringify(resp)}`)))
      .receive("timeout", () => settle(new Error(`join ${topic} timed out`)));
  });
}

function closeOfficial(socket: Socket, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    socket.disconnect(() => {
      clearTimeout(timer);
      resolve();
    }, 1000);
  });
}

async function openAll(cmd: OpenCommand): Promise<void> {
  const started = performance.now();
  let next = 0;
  let joined = 0;
  let failed = 0;
  let firstError: string | undefined;
  const opener = async (): Promise<void> => {
    while (next < cmd.sockets) {
      const topic = `${cmd.topicPrefix}${cmd.firstIndex + next++}`;
      try {
        if (cmd.client === "lean") leanSockets.push(await LeanPhoenixSocket.open(cmd.baseUrl, topic, cmd.timeoutMs));
        else officialSockets.push(await openOfficial(cmd.baseUrl, topic, cmd.timeoutMs));
        joined++;
      } catch (err) {
        failed++;
        firstError ??= eventText(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.concurrency, cmd.sockets)) }, opener));
  report({ type: "opened", joined, failed, ...(firstError === undefined ? {} : { firstError }), elapsedMs: performance.now() - started });
}

/** Every socket keeps `depth` echo pushes in flight; replies inside the window are counted. */
async function runThroughput(cmd: ThroughputCommand): Promise<void> {
  const payload = echoPayloadJson(cmd.payloadBytes);
  const windowStart = performance.now() + cmd.warmupMs;
  const windowEnd = windowStart + cmd.durationMs;
  let running = true;
  let replies = 0;
  let badReplies = 0;
  let socketErrors = 0;
  let outstanding = 0;
  for (const s of leanSockets) {
    s.onReply = (_ref, ok) => {
      outstanding--;
      const now = performance.now();
      if (!ok) badReplies++;
      else if (now >= windowStart && now < windowEnd) replies++;
      if (running && s.isOpen) {
        s.push(payload);
        outstanding++;
      }
    };
    s.onOther = () => badReplies++;
    s.onGone = () => socketErrors++;
    for (let d = 0; d < cmd.depth; d++) {
      s.push(payload);
      outstanding++;
    }
  }
  await sleep(windowEnd - performance.now());
  running = false;
  await waitUntil(() => outstanding <= 0, DRAIN_MS);
  report({ type: "throughput-done", replies, badReplies, socketErrors, windowMs: cmd.durationMs });
}

/** Every socket pushes once per tick and waits for the reply; round trips inside the window are sampled. */
async function runLatency(cmd: LatencyCommand): Promise<void> {
  const payload = echoPayloadJson(cmd.payloadBytes);
  const intervalMs = 1000 / cmd.ratePerSocket;
  const windowStart = performance.now() + cmd.warmupMs;
  const windowEnd = windowStart + cmd.durationMs;
  const samplesUs: number[] = [];
  const timers: NodeJS.Timeout[] = [];
  const sentAt = new Float64Array(leanSockets.length).fill(-1);
  let running = true;
  let skipped = 0;
  let socketErrors = 0;
  let badReplies = 0;
  leanSockets.forEach((s, i) => {
    s.onReply = (_ref, ok) => {
      const now = performance.now();
      const t0 = sentAt[i]!;
      sentAt[i] = -1;
      if (!ok) badReplies++;
      else if (t0 >= windowStart && t0 < windowEnd) samplesUs.push((now - t0) * 1000);
    };
    s.onOther = () => badReplies++;
    s.onGone = () => socketErrors++;
    const tick = (): void => {
      if (!running || !s.isOpen) return;
      const now = performance.now();
      if (sentAt[i]! >= 0) {
        if (now >= windowStart && now < windowEnd) skipped++;
        return;
      }
      sentAt[i] = now;
      s.push(payload);
    };
    // Spread the sockets' ticks over the interval so pushes do not arrive in bursts.
    timers.push(
      setTimeout(() => {
        tick();
        timers.push(setInterval(tick, intervalMs));
      }, Math.random() * intervalMs),
    );
  });
  await sleep(windowEnd - performance.now());
  running = false;
  for (const t of timers) clearTimeout(t);
  await waitUntil(() => sentAt.every((t) => t < 0), DRAIN_MS);
  for (const t of timers) clearTimeout(t);
  report({ type: "latency-done", samplesUs, skipped, socketErrors, badReplies });
}

async function closeAll(): Promise<void> {
  const lean = leanSockets;
  const official = officialSockets;
  leanSockets = [];
  officialSockets = [];
  await Promise.all([...lean.map((s) => s.close()), ...official.map((s) => closeOfficial(s, 3000))]);
  report({ type: "closed" });
}

function dispatch(cmd: WorkerCommand): Promise<void> {
  switch (cmd.type) {
    case "open":
      return openAll(cmd);
    case "throughput":
      return runThroughput(cmd);
    case "latency":
      return runLatency(cmd);
    case "close":
      return closeAll();
  }
}

process.on("message", (msg) => {
  dispatch(msg as WorkerCommand).catch((err: unknown) => report({ type: "failed", error: eventText(err) }));
});
// The driver is gone (finished or killed): nothing here may outlive it.
process.on("disconnect", () => process.exit(0));
