// Real clients: the official `phoenix` JS client (test/support/phoenix-client.ts), each slot
// holding one socket through a ready pod's sidecar and joining room topics, as users of a
// Phoenix app would. There are more slots than the policy's cap, so the cap is always
// pressed: a refused upgrade (503) retries a moment later on a random ready pod, and a socket
// that closes (its sidecar killed, its pod gone, a heartbeat lost to a frozen sidecar) is
// replaced. Long-topic clients join 300-character topics outside the policy's groups.
import type { Socket } from "phoenix";
import { join, phoenixSocket } from "../support/phoenix-client.js";
import type { PodDirectory } from "./pod-directory.js";
import type { Rng } from "./rng.js";
import { errText, sleepUnless } from "./soak-log.js";
import type { Workload } from "./workloads.js";

const CONNECT_TIMEOUT_MS = 5_000;
const JOIN_TIMEOUT_MS = 5_000;
/** Topic length of the long-topic clients (the CRD allows 253 in status). */
export const LONG_TOPIC_LENGTH = 300;

export interface ClientCounts {
  attempts: number;
  accepted: number;
  /** Upgrades answered 503 (a pod at its budget). */
  refused: number;
  /** Other failures: timeouts, resets, a pod that went away. */
  failed: number;
  /** Open sockets that closed under the client (not by the soak). */
  dropped: number;
  joins: number;
  joinErrors: number;
  longTopicJoins: number;
  longTopicErrors: number;
}

interface Slot {
  socket: Socket | undefined;
  holdsLongTopic: boolean;
}

export class ClientPool {
  readonly counts: ClientCounts = {
    attempts: 0, accepted: 0, refused: 0, failed: 0, dropped: 0, joins: 0, joinErrors: 0, longTopicJoins: 0, longTopicErrors: 0,
  };
  private readonly slots: Slot[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly stop = new AbortController();
  private frozen = false;

  constructor(readonly workload: Workload, private readonly pods: PodDirectory, private readonly rng: Rng) {}

  /** Starts one loop per client slot. */
  start(): void {
    for (let i = 0; i < this.workload.clients; i++) {
      const slot: Slot = { socket: undefined, holdsLongTopic: false };
      this.slots.push(slot);
      this.loops.push(this.runSlot(slot, this.rng.fork()));
    }
  }

  /** Quiescence: sockets that are open stay open; none is opened any more. */
  freeze(): void {
    this.frozen = true;
  }

  /** Sockets open now. */
  open(): number {
    return this.slots.filter((s) => s.socket?.isConnected()).length;
  }

  /**
   * Has `n` connected clients (not already holding one) each join a topic of
   * {@link LONG_TOPIC_LENGTH} characters outside the policy's groups. Returns the replies.
   */
  async joinLongTopics(n: number, rng: Rng): Promise<string[]> {
    const candidates = this.slots.filter((s) => s.socket?.isConnected() && !s.holdsLongTopic);
    const chosen: Slot[] = [];
    while (chosen.length < n && candidates.length > 0) chosen.push(candidates.splice(rng.int(0, candidates.length - 1), 1)[0]!);
    return Promise.all(chosen.map(async (slot) => {
      const topic = `patterns:${rng.word(LONG_TOPIC_LENGTH - "patterns:".length)}`;
      slot.holdsLongTopic = true;
      try {
        const reply = await join(slot.socket!.channel(topic, {}));
        if (reply === "ok") this.counts.longTopicJoins++;
        else this.counts.longTopicErrors++;
        return reply;
      } catch (err) {
        this.counts.longTopicErrors++;
        return errText(err);
      }
    }));
  }

  /** Stops every slot and closes every socket. */
  async close(): Promise<void> {
    this.stop.abort();
    for (const s of this.slots) s.socket?.disconnect();
    await Promise.all(this.loops);
  }

  private async runSlot(slot: Slot, rng: Rng): Promise<void> {
    const signal = this.stop.signal;
    // Spread the first connects over a few seconds.
    await sleepUnless(rng.int(0, 3000), signal);
    while (!signal.aborted && !this.frozen) {
      const ready = this.pods.ready(this.workload);
      if (ready.length === 0) {
        await sleepUnless(1000, signal);
        continue;
      }
      const pod = rng.pick(ready);
      const socket = await this.connect(`http://${pod.ip}:4001`);
      if (!socket) {
        await sleepUnless(rng.int(1000, 2000), signal);
        continue;
      }
      slot.socket = socket;
      slot.holdsLongTopic = false;
      await this.joinRooms(socket, rng);
      await this.untilClosed(socket, signal);
      if (!signal.aborted) this.counts.dropped++;
      socket.disconnect();
      if (!this.frozen) slot.socket = undefined;
      await sleepUnless(rng.int(300, 1500), signal);
    }
  }

  /** One upgrade through a sidecar; the open socket, or undefined (counted) when refused or failed. */
  private async connect(url: string): Promise<Socket | undefined> {
    this.counts.attempts++;
    const socket = phoenixSocket(url);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        opened(socket),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("connect timed out")), CONNECT_TIMEOUT_MS))),
      ]);
      this.counts.accepted++;
      return socket;
    } catch (err) {
      socket.disconnect();
      if (/\b503\b/.test(errorDetail(err))) this.counts.refused++;
      else this.counts.failed++;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  private async joinRooms(socket: Socket, rng: Rng): Promise<void> {
    const topics = [`room:${rng.int(0, 7)}`, ...(rng.next() < 0.5 ? ["room:lobby"] : [])];
    for (const t of topics) {
      try {
        const reply = await Promise.race([
          join(socket.channel(t, {})),
          new Promise<string>((resolve) => setTimeout(() => resolve("timeout"), JOIN_TIMEOUT_MS + 1000)),
        ]);
        if (reply === "ok") this.counts.joins++;
        else this.counts.joinErrors++;
      } catch {
        this.counts.joinErrors++;
      }
    }
  }

  private untilClosed(socket: Socket, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (!socket.isConnected() || signal.aborted) return resolve();
      socket.onClose(() => resolve());
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }
}

/**
 * Resolves once the socket is open; rejects with the transport's own error event (ws's
 * ErrorEvent, whose message names the HTTP status of a refused upgrade), which
 * test/support's `connected()` turns into text.
 */
function opened(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.onOpen(() => resolve());
    socket.onError((e: unknown) => reject(new Error(errorDetail(e), { cause: e })));
    socket.connect();
  });
}

/** The text of an ErrorEvent or an Error: "Unexpected server response: 503" for a refusal. */
function errorDetail(err: unknown): string {
  const e = err as { message?: unknown; error?: { message?: unknown } };
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  return `${text(e?.message) || errText(err)} ${text(e?.error?.message)}`.trim();
}
