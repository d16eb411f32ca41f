// Replays the client side of a recorded websocket scenario byte for byte (the raw relay chunks,
// masks, compression and TCP segmentation included) against a server, and collects what the
// server sends back. The recorded client ends its TCP side (FIN) or resets it (RST) where the
// trace says so. Timing is compressed: before each client action the replay waits for the
// answers the trace shows before it, so a run takes milliseconds, not seconds.
import { connect } from "node:net";
import type { Socket } from "node:net";
import { ServerFrameDecoder } from "./server-frames.js";
import { byConnection, expectedServerItems } from "./trace.js";
import type { ServerCount, Trace, WireItem } from "./trace.js";
import { sleep } from "../../wait.js";

export interface ReplayTarget {
  host: string;
  port: number;
}

export interface ReplayOptions {
  /** Longest wait for the answers the trace shows before the next client action (ms, default 2000). */
  answerTimeoutMs?: number;
  /**
   * Pause after a client action the trace shows no answer to, when the recording had a gap
   * before the next action, so the server's deferred work runs first (ms, default 25).
   */
  settleMs?: number;
  /** Called at each `server_counts` point, once everything recorded before it was sent and answered. */
  checkpoint?(point: ServerCount): Promise<void> | void;
}

export interface ReplayResult {
  /** Recorded server items, grouped by connection (ascending), each in recorded order. */
  expected: WireItem[];
  /** What the server sent, grouped the same way, each connection in arrival order. */
  received: WireItem[];
}

type Action =
  | { t: number; type: "write"; conn: number; data: Buffer }
  | { t: number; type: "end" | "reset"; conn: number }
  | { t: number; type: "check"; point: ServerCount };

const GAP_MS = 2;

function buildActions(trace: Trace): Action[] {
  const actions: Action[] = [];
  for (const chunk of trace.raw) {
    if (chunk.dir === "c2s") actions.push({ t: chunk.t, type: "write", conn: chunk.conn, data: Buffer.from(chunk.base64, "base64") });
  }
  for (const c of trace.meta.connections) {
    for (const event of c.lifecycle) {
      if (event.what.startsWith("client sent FIN")) actions.push({ t: event.t, type: "end", conn: c.conn });
      if (event.what === "relay -> server: RST") actions.push({ t: event.t, type: "reset", conn: c.conn });
    }
  }
  for (const point of trace.meta.server_counts) actions.push({ t: point.t, type: "check", point });
  return actions.sort((a, b) => a.t - b.t);
}

class Replayer {
  private readonly sockets = new Map<number, Socket>();
  private readonly decoders = new Map<number, ServerFrameDecoder>();
  private readonly expected: WireItem[];
  private readonly expectedTimes: Map<number, number[]>;

  constructor(
    private readonly trace: Trace,
    private readonly target: ReplayTarget,
    private readonly options: Required<Omit<ReplayOptions, "checkpoint">> & ReplayOptions,
  ) {
    this.expected = expectedServerItems(trace);
    const times = trace.items.filter((i) => i.dir === "s2c" && (i.kind === "ws_frame" || i.kind === "http_response"));
    this.expectedTimes = new Map([...byConnection(times)].map(([conn, items]) => [conn, items.map((i) => i.t)]));
  }

  async run(): Promise<ReplayResult> {
    const actions = buildActions(this.trace);
    let previous: Action | undefined;
    try {
      for (const action of actions) {
        await this.waitForAnswers(action.t);
        if (previous !== undefined && previous.type !== "check" && action.t - previous.t > GAP_MS && this.answersBetween(previous.t, action.t) === 0) {
          await sleep(this.options.settleMs);
        }
        await this.perform(action);
        previous = action;
      }
      await this.waitForAnswers(Number.POSITIVE_INFINITY);
      // Anything the server sends beyond the recording must show up in the comparison.
      await sleep(this.options.settleMs * 2);
      for (const d of this.decoders.values()) await d.settled();
    } finally {
      for (const s of this.sockets.values()) s.destroy();
      for (const d of this.decoders.values()) d.close();
    }
    const conns = [...new Set([...this.decoders.keys(), ...this.expectedTimes.keys()])].sort((a, b) => a - b);
    const expectedByConn = byConnection(this.expected);
    return {
      expected: conns.flatMap((c) => expectedByConn.get(c) ?? []),
      received: conns.flatMap((c) => this.decoders.get(c)?.items ?? []),
    };
  }

  private answersBetween(from: number, to: number): number {
    let n = 0;
    for (const times of this.expectedTimes.values()) n += times.filter((t) => t > from && t < to).length;
    return n;
  }

  private answered(before: number): boolean {
    for (const [conn, times] of this.expectedTimes) {
      const want = times.filter((t) => t < before).length;
      if ((this.decoders.get(conn)?.items.length ?? 0) < want) return false;
    }
    return true;
  }

  private async waitForAnswers(before: number): Promise<void> {
    const deadline = Date.now() + this.options.answerTimeoutMs;
    while (!this.answered(before) && Date.now() < deadline) await sleep(2);
  }

  private async perform(action: Action): Promise<void> {
    switch (action.type) {
      case "check":
        await this.options.checkpoint?.(action.point);
        return;
      case "write": {
        const socket = this.sockets.get(action.conn) ?? (await this.open(action.conn));
        if (!socket.destroyed && socket.writable) socket.write(action.data);
        return;
      }
      case "end":
        this.sockets.get(action.conn)?.end();
        return;
      case "reset": {
        const socket = this.sockets.get(action.conn);
        if (socket !== undefined && !socket.destroyed) socket.resetAndDestroy();
        return;
      }
    }
  }

  private open(conn: number): Promise<Socket> {
    const decoder = new ServerFrameDecoder(conn);
    this.decoders.set(conn, decoder);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.target.host, port: this.target.port, noDelay: true });
      this.sockets.set(conn, socket);
      socket.on("data", (chunk: Buffer) => decoder.push(chunk));
      socket.on("error", () => undefined);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
      socket.once("error", reject);
    });
  }
}

/** Replays `trace`'s websocket connections against `target`; see ReplayOptions. */
export function replayWebSocketTrace(trace: Trace, target: ReplayTarget, options: ReplayOptions = {}): Promise<ReplayResult> {
  return new Replayer(trace, target, {
    answerTimeoutMs: options.answerTimeoutMs ?? 2000,
    settleMs: options.settleMs ?? 25,
    checkpoint: options.checkpoint,
  }).run();
}
