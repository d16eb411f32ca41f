import {
  EVENT_CLOSE,
  EVENT_ERROR,
  EVENT_JOIN,
  EVENT_LEAVE,
  EVENT_REPLY,
  HEARTBEAT_TOPIC,
  type PhoenixMessage,
} from "../phoenix/message.js";
import type { TopicGroups } from "./topic-groups.js";

/** Why a joined channel ended; the index into {@link ChannelLedger.leavesByCause}. */
export const END_LEAVE = 0;
export const END_CLOSE = 1;
export const END_ERROR = 2;
export const END_DUPLICATE = 3;
export const END_SOCKET_CLOSE = 4;
export const END_CAUSES = ["leave", "close", "error", "duplicate", "socket_close"] as const;

/** Join outcomes; the index into {@link ChannelLedger.joinsByResult}. */
export const JOIN_OK = 0;
export const JOIN_ERROR = 1;
export const JOIN_REFUSED = 2;
export const JOIN_RESULTS = ["ok", "error", "refused"] as const;

/** Socket kinds, counted apart in /stats. */
export const KIND_WEBSOCKET = 0;
export const KIND_LONGPOLL = 1;

/**
 * Pending joins and leaves a socket may have unanswered at once. A client can send joins the
 * server never answers (a leave with a stale join_ref is dropped silently, for example), so
 * the oldest is forgotten past this bound to keep memory per socket fixed.
 */
export const MAX_PENDING_PER_SOCKET = 256;

/**
 * The sidecar-wide channel ledger: every socket's joined channels, and the counts derived
 * from them. Counts only ever change together with the ledger entries they come from, so
 * they cannot go negative and a socket's close removes exactly what it held.
 */
export class ChannelLedger {
  /** Open sockets by kind (WebSocket connections, long-poll sessions). */
  readonly sockets = new Float64Array(2);
  /** Joined channels, summed over sockets of every kind. */
  channels = 0;
  /** Counters for metrics, indexed by the JOIN_* and END_* constants. */
  readonly joinsByResult = new Float64Array(JOIN_RESULTS.length);
  readonly leavesByCause = new Float64Array(END_CAUSES.length);
  /** Pending operations forgotten because a socket had too many unanswered. */
  pendingDropped = 0;
  /** Per topic: joined channels and the topic's group, resolved once when the topic appears. */
  private readonly topicEntries = new Map<string, TopicEntry>();
  private groupCounts: Float64Array;
  private groupPending: Float64Array;
  private groups: TopicGroups;

  constructor(groups: TopicGroups) {
    this.groups = groups;
    this.groupCounts = new Float64Array(groups.size);
    this.groupPending = new Float64Array(groups.size);
  }

  /** Opens the ledger view of one socket. */
  openSocket(kind: number): SocketChannels {
    this.sockets[kind]!++;
    return new SocketChannels(this, kind);
  }

  /** Swaps topic groups (a PUT /config); group counts are rebuilt from the per-topic counts. */
  setGroups(groups: TopicGroups): void {
    this.groups = groups;
    this.groupCounts = new Float64Array(groups.size);
    this.groupPending = new Float64Array(groups.size);
    for (const [topic, entry] of this.topicEntries) {
      entry.group = groups.groupOf(topic);
      if (entry.group >= 0) this.groupCounts[entry.group]! += entry.channels;
    }
  }

  get topicGroups(): TopicGroups {
    return this.groups;
  }

  /** Joined channels per topic (exact; one entry per topic with at least one channel). */
  *topics(): IterableIterator<[topic: string, channels: number]> {
    for (const [topic, entry] of this.topicEntries) yield [topic, entry.channels];
  }

  /**
   * Calls `fn` for every topic outside any group. Group membership was resolved when each
   * topic appeared, so a scrape over a million topics runs no glob.
   */
  forEachUngroupedTopic(fn: (topic: string, channels: number) => void): void {
    for (const [topic, entry] of this.topicEntries) if (entry.group < 0) fn(topic, entry.channels);
  }

  /** Joined channels in topic group `g`. */
  groupChannels(g: number): number {
    return this.groupCounts[g] ?? 0;
  }

  /**
   * Whether one more join of `topic` fits its group's budget, counting joins still waiting
   * for their reply so that a burst of joins cannot overshoot.
   */
  admitsJoin(topic: string): boolean {
    const g = this.groups.groupOf(topic);
    if (g < 0) return true;
    const max = this.groups.maxChannels(g);
    return max === undefined || this.groupCounts[g]! + this.groupPending[g]! < max;
  }

  /** Whether any topic group has a channel budget (joins may be refused). */
  get hasBudgets(): boolean {
    return this.groups.hasBudgets;
  }

  /** @internal */ addChannel(topic: string): void {
    this.channels++;
    let entry = this.topicEntries.get(topic);
    if (entry === undefined) this.topicEntries.set(topic, (entry = { channels: 0, group: this.groups.groupOf(topic) }));
    entry.channels++;
    if (entry.group >= 0) this.groupCounts[entry.group]!++;
  }

  /** @internal */ removeChannel(topic: string, cause: number): void {
    this.leavesByCause[cause]!++;
    const entry = this.topicEntries.get(topic);
    if (entry === undefined) return; // unreachable while the ledger is consistent
    this.channels--;
    if (--entry.channels <= 0) this.topicEntries.delete(topic);
    if (entry.group >= 0 && this.groupCounts[entry.group]! > 0) this.groupCounts[entry.group]!--;
  }

  /** @internal */ trackPending(topic: string, delta: number): void {
    const g = this.groups.groupOf(topic);
    if (g >= 0) this.groupPending[g] = Math.max(0, this.groupPending[g]! + delta);
  }
}

interface TopicEntry {
  channels: number;
  /** Index into the topic groups, or -1. */
  group: number;
}

const OP_JOIN = 0;
const OP_LEAVE = 1;

interface PendingOp {
  op: number;
  topic: string;
  joinRef: string | null;
}

/**
 * One socket's channels, keyed the way DESIGN.md's counting rules say: a channel is
 * (socket, topic, join_ref), pending from the client's join until the server's reply, joined
 * from an ok reply until a leave reply, phx_close or phx_error for its join_ref, a newer ok
 * join of the topic, or the socket's close. Maps are created on first use, so an idle socket
 * costs a few fields.
 */
export class SocketChannels {
  private pending: Map<string, PendingOp> | null = null;
  /** topic → join_ref of the channel that holds it (null when the client sent none). */
  private joined: Map<string, string | null> | null = null;
  /** topic → join_ref of a channel a duplicate join replaced; its phx_close is still due. */
  private replaced: Map<string, string | null> | null = null;
  private closed = false;

  constructor(
    private readonly ledger: ChannelLedger,
    readonly kind: number,
  ) {}

  /** Joined channels on this socket. */
  get channelCount(): number {
    return this.joined?.size ?? 0;
  }

  /** A message the client sent (after any refusal decision: refused joins never get here). */
  onClientMessage(msg: PhoenixMessage): void {
    if (this.closed || msg.topic === HEARTBEAT_TOPIC || msg.ref === null) return;
    if (msg.event === EVENT_JOIN) this.addPending(msg.ref, OP_JOIN, msg.topic, msg.joinRef ?? null);
    else if (msg.event === EVENT_LEAVE) this.addPending(msg.ref, OP_LEAVE, msg.topic, msg.joinRef ?? null);
  }

  /** A message the server sent. */
  onServerMessage(msg: PhoenixMessage): void {
    if (this.closed || msg.topic === HEARTBEAT_TOPIC) return;
    switch (msg.event) {
      case EVENT_REPLY:
        this.onReply(msg);
        break;
      case EVENT_CLOSE:
        // vsn 1 servers put the join_ref in the ref position and never send join_ref.
        this.onChannelEnd(msg.topic, msg.joinRef ?? msg.ref, END_CLOSE);
        break;
      case EVENT_ERROR:
        this.onChannelEnd(msg.topic, msg.joinRef ?? msg.ref, END_ERROR);
        break;
    }
  }

  /** Whether a join or leave of this socket waits for the server's reply. */
  get awaitsReplies(): boolean {
    return this.pending !== null;
  }

  /** Whether joins on this socket may be refused at all (some topic group has a budget). */
  get budgeted(): boolean {
    return this.ledger.hasBudgets;
  }

  /**
   * Whether a join of `topic` fits its group's budget. A rejoin of a topic this socket holds
   * replaces its channel and adds nothing, so it always fits.
   */
  admitsJoin(topic: string): boolean {
    return (this.joined?.has(topic) ?? false) || this.ledger.admitsJoin(topic);
  }

  /** The sidecar refused a join over its group's budget; the app never saw it. */
  refuseJoin(): void {
    this.ledger.joinsByResult[JOIN_REFUSED]!++;
  }

  /** The socket closed (or the long-poll session lapsed): drop everything it held. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ledger.sockets[this.kind]!--;
    if (this.pending !== null) {
      for (const p of this.pending.values()) if (p.op === OP_JOIN) this.ledger.trackPending(p.topic, -1);
    }
    if (this.joined !== null) {
      for (const topic of this.joined.keys()) this.ledger.removeChannel(topic, END_SOCKET_CLOSE);
    }
    this.pending = this.joined = this.replaced = null;
  }

  private addPending(ref: string, op: number, topic: string, joinRef: string | null): void {
    const pending = (this.pending ??= new Map());
    if (pending.size >= MAX_PENDING_PER_SOCKET) {
      const oldest = pending.keys().next().value as string;
      const dropped = pending.get(oldest)!;
      if (dropped.op === OP_JOIN) this.ledger.trackPending(dropped.topic, -1);
      pending.delete(oldest);
      this.ledger.pendingDropped++;
    }
    const previous = pending.get(ref);
    if (previous?.op === OP_JOIN) this.ledger.trackPending(previous.topic, -1);
    pending.set(ref, { op, topic, joinRef: op === OP_JOIN ? (joinRef ?? null) : joinRef });
    if (op === OP_JOIN) this.ledger.trackPending(topic, 1);
  }

  private onReply(msg: PhoenixMessage): void {
    if (msg.ref === null || this.pending === null) return;
    const op = this.pending.get(msg.ref);
    if (op === undefined || op.topic !== msg.topic) return;
    this.pending.delete(msg.ref);
    if (this.pending.size === 0) this.pending = null; // an idle socket keeps no empty map
    if (op.op === OP_LEAVE) {
      this.onChannelEnd(op.topic, op.joinRef, END_LEAVE);
      return;
    }
    this.ledger.trackPending(op.topic, -1);
    if (msg.status !== "ok") {
      this.ledger.joinsByResult[JOIN_ERROR]!++;
      return;
    }
    this.ledger.joinsByResult[JOIN_OK]!++;
    const joined = (this.joined ??= new Map());
    if (joined.has(op.topic)) {
      // The server shut the older channel down and sends its phx_close right after this
      // reply; remember it so that close (whose join_ref may be null on vsn 1, like the new
      // channel's) does not end the new channel.
      (this.replaced ??= new Map()).set(op.topic, joined.get(op.topic) ?? null);
      this.ledger.leavesByCause[END_DUPLICATE]!++;
      joined.set(op.topic, op.joinRef);
      return;
    }
    joined.set(op.topic, op.joinRef);
    this.ledger.addChannel(op.topic);
  }

  private onChannelEnd(topic: string, joinRef: string | null, cause: number): void {
    if (this.replaced !== null && this.replaced.has(topic) && this.replaced.get(topic) === joinRef) {
      this.replaced.delete(topic);
      if (this.replaced.size === 0) this.replaced = null;
      return;
    }
    if (this.joined === null || !this.joined.has(topic) || this.joined.get(topic) !== joinRef) return;
    this.joined.delete(topic);
    this.ledger.removeChannel(topic, cause);
  }
}
