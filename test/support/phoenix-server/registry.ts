// The ground truth: every successfully joined channel, like the Elixir Registry behind the
// real app's GET /count, and the topic subscriptions broadcasts go through (Phoenix PubSub).
import type { OutFrame, Serializer } from "./serializer.js";

export type TransportName = "websocket" | "longpoll";

/** The socket side a channel writes to. */
export interface ChannelOwner {
  readonly serializer: Serializer;
  readonly transport: TransportName;
  send(frame: OutFrame): void;
}

/** A joined channel: the triple (socket, topic, join_ref). */
export interface ChannelEntry {
  readonly owner: ChannelOwner;
  readonly topic: string;
  readonly joinRef: unknown;
}

export interface ChannelInfo {
  topic: string;
  join_ref: unknown;
  vsn: string;
  transport: TransportName;
}

export class ChannelRegistry {
  private readonly topics = new Map<string, Set<ChannelEntry>>();
  private total = 0;

  register(entry: ChannelEntry): void {
    let set = this.topics.get(entry.topic);
    if (set === undefined) {
      set = new Set();
      this.topics.set(entry.topic, set);
    }
    if (set.has(entry)) return;
    set.add(entry);
    this.total++;
  }

  unregister(entry: ChannelEntry): void {
    const set = this.topics.get(entry.topic);
    if (set === undefined || !set.delete(entry)) return;
    this.total--;
    if (set.size === 0) this.topics.delete(entry.topic);
  }

  count(): number {
    return this.total;
  }

  countByTopic(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [topic, set] of this.topics) out[topic] = set.size;
    return out;
  }

  list(): ChannelInfo[] {
    const out: ChannelInfo[] = [];
    for (const set of this.topics.values()) {
      for (const e of set) {
        out.push({ topic: e.topic, join_ref: e.joinRef, vsn: e.owner.serializer.vsn, transport: e.owner.transport });
      }
    }
    return out;
  }

  /**
   * Sends one broadcast to every channel joined to `topic`, encoding it once per serializer
   * (Phoenix's fastlane). A subscriber whose serializer cannot carry the payload is skipped.
   */
  broadcast(topic: string, event: string, payload: unknown): void {
    const set = this.topics.get(topic);
    if (set === undefined) return;
    const encoded = new Map<Serializer, OutFrame | null>();
    for (const entry of set) {
      const serializer = entry.owner.serializer;
      let frame = encoded.get(serializer);
      if (frame === undefined) {
        try {
          frame = serializer.broadcast(topic, event, payload);
        } catch {
          frame = null;
        }
        encoded.set(serializer, frame);
      }
      if (frame !== null) entry.owner.send(frame);
    }
  }
}
