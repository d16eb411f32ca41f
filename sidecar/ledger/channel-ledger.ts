import {
  EVENT_CLOSE,
  EVENT_ERROR,
  EVENT_JOIN,
  EVENT_LEAVE,
  EVENT_REPLY,
  COMPLEX_REF,
  type PhoenixMessage,
} from "../phoenix/message.js";
import { OTHER_TOPICS, type TopicGroups } from "./topic-groups.js";
import { TimeIntegral } from "./time-integral.js";
import { JoinThrottle, SocketJoinBucket } from "../limits/join-throttle.js";
import { DEFAULT_LIMITS } from "../limits/admission.js";

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
 * Unanswered joins one socket may have before its client relay pauses. Phoenix answers every
 * join, one at a time in the socket process (ok, error, "too many channels joined" past its
 * `max_channels_per_transport` of 100 by default, "unmatched topic", "join crashed"), so a
 * pending join is never forgotten: the relay stops reading the client instead, exactly as the
 * app's own one-join-at-a-time processing would make it wait, and resumes at
 * {@link RESUME_PENDING_JOINS}. Memory per socket is this bound plus the joins of one read.
 */
export const MAX_PENDING_JOINS_PER_SOCKET = 1024;
export const RESUME_PENDING_JOINS = MAX_PENDING_JOINS_PER_SOCKET / 2;

/**
 * Unanswered leaves one socket keeps. A leave with a stale join_ref is dropped by the server
 * without a reply, so leaves can pile up; past this bound the oldest is forgotten. That never
 * changes a count: a joined channel's leave reply is followed by its phx_close, which ends the
 * channel too (only the cause label differs).
 */
export const MAX_PENDING_LEAVES_PER_SOCKET = 256;

/**
 * Messages the sidecar relayed without being able to decide what they do to the ledger or a
 * budget; the index into {@link ChannelLedger.undecided}.
 */
/** A topic, event or ref longer than the scanner reads (a join among them is not counted). */
export const UNDECIDED_FIELD_TOO_LONG = 0;
/** A join over its group's budget, too long to hold back: it reached the app (and is counted). */
export const UNDECIDED_TOO_LONG_TO_HOLD = 1;
/** A join over budget on a socket whose client compresses with context takeover: it cannot be cut out. */
export const UNDECIDED_CONTEXT_TAKEOVER = 2;
export const UNDECIDED_REASONS = ["field_too_long", "too_long_to_hold", "context_takeover"] as const;

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
  /** Unanswered leaves forgotten past {@link MAX_PENDING_LEAVES_PER_SOCKET} (counts unaffected). */
  leavesForgotten = 0;
  /** Times a socket's client relay paused because it had too many unanswered joins. */
  joinPauses = 0;
  /** Messages relayed undecided, indexed by the UNDECIDED_* constants. */
  readonly undecided = new Float64Array(UNDECIDED_REASONS.length);
  /** Per topic: joined channels and the topic's group, resolved once when the topic appears. */
  private readonly topicEntries = new Map<string, TopicEntry>();
  private groupCounts: Float64Array;
  private groupPending: Float64Array;
  private groups: TopicGroups;
  /** Usage (billing): socket-seconds by kind, channel-seconds in all and per topic group. */
  private readonly socketTime: TimeIntegral[];
  private readonly channelTime: TimeIntegral;
  private groupTime: TimeIntegral[];
  /** Join rate limits (per socket and per pod); the sidecar configures them. */
  readonly joinThrottle: JoinThrottle;

  constructor(groups: TopicGroups, private readonly now: () => number = Date.now) {
    this.groups = groups;
    this.groupCounts = new Float64Array(groups.size);
    this.groupPending = new Float64Array(groups.size);
    const t = now();
    this.socketTime = [new TimeIntegral(t), new TimeIntegral(t)];
    this.channelTime = new TimeIntegral(t);
    this.groupTime = Array.from({ length: groups.size }, () => new TimeIntegral(t));
    this.joinThrottle = new JoinThrottle(DEFAULT_LIMITS, now);
  }

  /** Opens the ledger view of one socket. */
  openSocket(kind: number): SocketChannels {
    this.sockets[kind]!++;
    this.socketTime[kind]!.add(1, this.now());
    return new SocketChannels(this, kind);
  }

  /**
   * Swaps topic groups (a PUT /config); group counts are rebuilt from the per-topic counts. A
   * group kept by name keeps its channel-seconds; a dropped group's seconds fold into
   * {@link OTHER_TOPICS} (every series stays monotonic).
   */
  setGroups(groups: TopicGroups): void {
    const t = this.now();
    const kept = new Map<string, number>();
    for (let g = 0; g < this.groups.size; g++) kept.set(this.groups.name(g), this.groupTime[g]!.secondsAt(t));
    this.groups = groups;
    this.groupCounts = new Float64Array(groups.size);
    this.groupPending = new Float64Array(groups.size);
    for (const [topic, entry] of this.topicEntries) {
      entry.group = groups.groupOf(topic);
      if (entry.group >= 0) this.groupCounts[entry.group]! += entry.channels;
    }
    this.groupTime = Array.from({ length: groups.size }, (_, g) => {
      const integral = new TimeIntegral(t, kept.get(groups.name(g)) ?? 0);
      integral.add(this.groupCounts[g]!, t);
      return integral;
    });
  }

  /** Seconds that sockets of `kind` were open, open ones up to now (long-poll sessions: until they lapse). */
  socketSeconds(kind: number): number {
    return this.socketTime[kind]!.secondsAt(this.now());
  }

  /**
   * Channel-seconds per topic group, exact to this instant (open channels included), and the
   * channels outside every group under {@link OTHER_TOPICS}: bounded labels that sum to the
   * sidecar's total.
   */
  channelSeconds(): [group: string, seconds: number][] {
    const t = this.now();
    const out: [string, number][] = [];
    let grouped = 0;
    for (let g = 0; g < this.groups.size; g++) {
      const s = this.groupTime[g]!.secondsAt(t);
      grouped += s;
      out.push([this.groups.name(g), s]);
    }
    out.push([OTHER_TOPICS, Math.max(0, this.channelTime.secondsAt(t) - grouped)]);
    return out;
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

  /** Whether joins may be refused: some topic group has a channel budget, or a join rate limit is on. */
  get hasBudgets(): boolean {
    return this.groups.hasBudgets || this.joinThrottle.enabled;
  }

  /** @internal */ addChannel(topic: string): void {
    const t = this.now();
    this.channels++;
    this.channelTime.add(1, t);
    let entry = this.topicEntries.get(topic);
    if (entry === undefined) this.topicEntries.set(topic, (entry = { channels: 0, group: this.groups.groupOf(topic) }));
    entry.channels++;
    if (entry.group >= 0) {
      this.groupCounts[entry.group]!++;
      this.groupTime[entry.group]!.add(1, t);
    }
  }

  /** @internal */ closeSocket(kind: number): void {
    this.sockets[kind]!--;
    this.socketTime[kind]!.add(-1, this.now());
  }

  /** @internal */ removeChannel(topic: string, cause: number): void {
    this.leavesByCause[cause]!++;
    const entry = this.topicEntries.get(topic);
    if (entry === undefined) return; // unreachable while the ledger is consistent
    const t = this.now();
    this.channels--;
    this.channelTime.add(-1, t);
    if (--entry.channels <= 0) this.topicEntries.delete(topic);
    if (entry.group >= 0 && this.groupCounts[entry.group]! > 0) {
      this.groupCounts[entry.group]!--;
      this.groupTime[entry.group]!.add(-1, t);
    }
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

/** A join or leave waiting for the server's reply. */
interface Pending {
  topic: string;
  joinRef: string | null;
}

/**
 * Pending operations keyed by topic and ref (a reply carries both), oldest first. A client may
 * reuse a ref, so one key can hold several; none is ever overwritten.
 */
class PendingQueue {
  private readonly byKey = new Map<string, Pending[]>();
  size = 0;

  add(topic: string, ref: string | null, joinRef: string | null): void {
    const key = pendingKey(topic, ref);
    const list = this.byKey.get(key);
    if (list === undefined) this.byKey.set(key, [{ topic, joinRef }]);
    else list.push({ topic, joinRef });
    this.size++;
  }

  /**
   * Takes the oldest operation a reply answers. Phoenix echoes the join_ref of the join it
   * answers (vsn 2), or none (vsn 1, and "unmatched topic" errors), so a reply whose join_ref
   * names another channel is not this operation's.
   */
  take(topic: string, ref: string | null, joinRef: string | null): Pending | undefined {
    const key = pendingKey(topic, ref);
    const list = this.byKey.get(key);
    if (list === undefined) return undefined;
    const i = joinRef === null ? 0 : list.findIndex((p) => sameRef(p.joinRef, joinRef));
    if (i < 0) return undefined;
    const [op] = list.splice(i, 1);
    if (list.length === 0) this.byKey.delete(key);
    this.size--;
    return op;
  }

  /** Forgets the oldest operation (the first key's first entry). */
  dropOldest(): void {
    const first = this.byKey.entries().next();
    if (first.done === true) return;
    const [key, list] = first.value;
    list.shift();
    if (list.length === 0) this.byKey.delete(key);
    this.size--;
  }

  *values(): IterableIterator<Pending> {
    for (const list of this.byKey.values()) yield* list;
  }
}

/** Topic and ref as one map key; a null ref (legal in Phoenix) gets its own spelling. */
function pendingKey(topic: string, ref: string | null): string {
  return ref === null ? `${topic}\u0000n` : `${topic}\u0000s${ref}`;
}

/** Refs compare as the scanner canonicalised them; a container ref (COMPLEX_REF) matches any. */
function sameRef(a: string | null, b: string | null): boolean {
  return a === b || a === COMPLEX_REF || b === COMPLEX_REF;
}

/**
 * One socket's channels, keyed the way DESIGN.md's counting rules say: a channel is
 * (socket, topic, join_ref), pending from the client's join until the server's reply, joined
 * from an ok reply until a leave reply, phx_close or phx_error for its join_ref, a newer ok
 * join of the topic, or the socket's close. Maps are created on first use, so an idle socket
 * costs a few fields.
 */
export class SocketChannels {
  private joins: PendingQueue | null = null;
  private leaves: PendingQueue | null = null;
  /** topic → join_ref of the channel that holds it (null when the client sent none). */
  private joined: Map<string, string | null> | null = null;
  /** topic → join_ref of a channel a duplicate join replaced; its phx_close is still due. */
  private replaced: Map<string, string | null> | null = null;
  private closed = false;
  /** This socket's join bucket, made on its first join while a per-socket rate is on. */
  private joinBucket: SocketJoinBucket | null = null;

  constructor(
    private readonly ledger: ChannelLedger,
    readonly kind: number,
  ) {}

  /** Joined channels on this socket. */
  get channelCount(): number {
    return this.joined?.size ?? 0;
  }

  /** Joins on this socket still waiting for the server's reply. */
  get pendingJoinCount(): number {
    return this.joins?.size ?? 0;
  }

  /** The client relay should pause: too many joins wait for a reply (see {@link MAX_PENDING_JOINS_PER_SOCKET}). */
  get tooManyPendingJoins(): boolean {
    return this.pendingJoinCount >= MAX_PENDING_JOINS_PER_SOCKET;
  }

  /** A relay paused for {@link tooManyPendingJoins} may read the client again. */
  get fewPendingJoins(): boolean {
    return this.pendingJoinCount <= RESUME_PENDING_JOINS;
  }

  /**
   * A message the client sent (after any refusal decision: refused joins never get here).
   * Only `phoenix`/`heartbeat` is answered by the socket itself; a join of any other pair is a
   * join, whatever its ref (null and numbers included), as Phoenix.Socket routes it.
   */
  onClientMessage(msg: PhoenixMessage): void {
    if (this.closed) return;
    if (msg.event === EVENT_JOIN) {
      (this.joins ??= new PendingQueue()).add(msg.topic, msg.ref, msg.joinRef);
      this.ledger.trackPending(msg.topic, 1);
    } else if (msg.event === EVENT_LEAVE) {
      const leaves = (this.leaves ??= new PendingQueue());
      if (leaves.size >= MAX_PENDING_LEAVES_PER_SOCKET) {
        leaves.dropOldest();
        this.ledger.leavesForgotten++;
      }
      leaves.add(msg.topic, msg.ref, msg.joinRef);
    }
  }

  /** A message the server sent. */
  onServerMessage(msg: PhoenixMessage): void {
    if (this.closed) return;
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
    return this.joins !== null || this.leaves !== null;
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

  /**
   * Why a join must be refused, or null to let it through: `capacity` (over its group's
   * budget; decided first, so a refused join spends no rate token) or `rate_limited` (the
   * socket's or the pod's join bucket is empty).
   */
  joinRefusal(topic: string): "capacity" | "rate_limited" | null {
    if (!this.admitsJoin(topic)) return "capacity";
    const throttle = this.ledger.joinThrottle;
    if (!throttle.enabled) return null;
    return throttle.admit((this.joinBucket ??= new SocketJoinBucket())) ? null : "rate_limited";
  }

  /** The sidecar refused a join (over its group's budget, or rate limited); the app never saw it. */
  refuseJoin(): void {
    this.ledger.joinsByResult[JOIN_REFUSED]!++;
  }

  /** A message went by that the sidecar could not decide; `reason` is an UNDECIDED_* constant. */
  noteUndecided(reason: number): void {
    this.ledger.undecided[reason]!++;
  }

  /** The client relay paused for {@link tooManyPendingJoins}. */
  notePausedForJoins(): void {
    this.ledger.joinPauses++;
  }

  /** The socket closed (or the long-poll session lapsed): drop everything it held. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ledger.closeSocket(this.kind);
    if (this.joins !== null) for (const p of this.joins.values()) this.ledger.trackPending(p.topic, -1);
    if (this.joined !== null) {
      for (const topic of this.joined.keys()) this.ledger.removeChannel(topic, END_SOCKET_CLOSE);
    }
    this.joins = this.leaves = this.joined = this.replaced = null;
  }

  private onReply(msg: PhoenixMessage): void {
    const join = this.joins?.take(msg.topic, msg.ref, msg.joinRef);
    if (join !== undefined) {
      if (this.joins!.size === 0) this.joins = null; // an idle socket keeps no empty queue
      this.onJoinReply(join, msg.status === "ok");
      return;
    }
    const leave = this.leaves?.take(msg.topic, msg.ref, msg.joinRef);
    if (leave === undefined) return;
    if (this.leaves!.size === 0) this.leaves = null;
    this.onChannelEnd(leave.topic, leave.joinRef, END_LEAVE);
  }

  private onJoinReply(op: Pending, ok: boolean): void {
    this.ledger.trackPending(op.topic, -1);
    if (!ok) {
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
