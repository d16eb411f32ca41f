import picomatch from "picomatch";
import { MAX_OCCUPANCY_KEYS, MAX_TOPIC_NAME_LENGTH, OCCUPANCY_EVENT, type OccupancyPush, type OccupancySnapshot } from "../admin/contract.js";
import { EVENT_JOIN, EVENT_LEAVE, type PhoenixMessage, type PhoenixVsn } from "../phoenix/message.js";
import { encodeTextFrame } from "../proxy/frame-writer.js";
import { closeText, pushText, readVirtualMessage, replyText, type VirtualMessage } from "./virtual-wire.js";

/** Topics one join (or one GET /occupancy) may ask for. */
export const MAX_REQUESTED_TOPICS = 16;
/** Virtual joins a socket may make in a burst; then one per {@link JOIN_REFILL_MS}. */
export const JOIN_BURST = 5;
export const JOIN_REFILL_MS = 2000;

/** A socket that may hold a virtual channel: the sidecar writes its frames between server messages. */
export interface VirtualClient {
  readonly vsn: PhoenixVsn;
  /** Writes a sidecar-made frame to the client (dropped when the client reads too slowly). */
  sendVirtual(frame: Buffer): void;
}

/** Why a request is refused; `reason` is stable (clients and tests match it), `detail` says what to do. */
export interface Refusal {
  reason: "not_enabled" | "not_exposed" | "too_many_topics" | "bad_params" | "rate_limited" | "unsupported_event";
  detail: string;
  topic?: string;
}

/** What a subscriber or GET /occupancy gets: `{total?, topics, nodes?, at}`. */
export interface OccupancyPayload {
  total?: { connections: number; channels: number };
  topics: Record<string, number | null>;
  nodes?: Record<string, { connections?: number; channels?: number; topics: Record<string, number> }>;
  /** When the counts were measured; null until the operator pushed a first measurement. */
  at: string | null;
}

export interface OccupancyRequest {
  topics: string[];
  nodes: boolean;
}

/** Subscribers asking the same thing in the same serializer share one encoded frame per update. */
interface SubscriberGroup {
  key: string;
  request: OccupancyRequest;
  vsn: PhoenixVsn;
  members: Set<Subscription>;
  /** The counts (without `at`) last pushed: a push goes out only when they change. */
  lastCounts: string;
}

interface Subscription {
  client: VirtualClient;
  joinRef: unknown;
  group: SubscriberGroup;
}

interface SocketState {
  sub: Subscription | null;
  tokens: number;
  refilledAtMs: number;
}

/**
 * The virtual topic `connmeter:occupancy` and GET /occupancy: answers from the newest snapshot
 * the operator pushed, only for what spec.occupancy exposes. One live virtual channel per
 * socket, as Phoenix has one channel per topic per socket (a newer join replaces the older,
 * which gets `phx_close`); joins are rate-limited per socket. Updates go out at most once per
 * interval and only when a value changed; each distinct request is encoded once per update
 * and the same frame is written to all its subscribers.
 */
export class OccupancyHub {
  private policy: OccupancyPush | null = null;
  private matchers: ((topic: string) => boolean)[] = [];
  /** Per live topic, the indices of the exposed globs it matches (rebuilt at each /stats; reset with the globs). */
  private globsOf = new Map<string, number[]>();
  /** Ends the pushed policy when its lease runs out without a refresh. */
  private expiry: NodeJS.Timeout | null = null;
  private readonly groups = new Map<string, SubscriberGroup>();
  private readonly sockets = new Map<VirtualClient, SocketState>();
  private subscribers = 0;
  private lastFlushMs = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  /** Pushes written (frames), encodes made: the fan-out's cost, for metrics and the bench. */
  readonly counters = { pushes: 0, encodes: 0, refused: 0 };

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Whether a policy is in force (its lease not run out): client messages on the topic are then
   * cut and served. Read per relayed message, so a field, not a clock read.
   */
  get enabled(): boolean {
    return this.policy !== null;
  }

  get subscriberCount(): number {
    return this.subscribers;
  }

  get exposed(): readonly string[] {
    return this.policy?.expose ?? [];
  }

  /** A PUT /config's `occupancy` (null lifts it); it holds for `ttlSeconds` like the rest of the push. */
  configure(push: OccupancyPush | null, ttlSeconds?: number): void {
    const policyChanged = push === null || this.policy === null || JSON.stringify(push.expose) !== JSON.stringify(this.policy.expose) || push.totals !== this.policy.totals;
    this.policy = push;
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.expiry = null;
    if (push !== null && ttlSeconds !== undefined) {
      this.expiry = setTimeout(this.expire, ttlSeconds * 1000);
      this.expiry.unref();
    }
    if (push === null) {
      this.matchers = [];
      this.globsOf = new Map();
      this.closeAll();
      return;
    }
    if (policyChanged) this.globsOf = new Map();
    this.matchers = push.expose.map((g) => picomatch(g, { dot: true, nonegate: true, bash: true }));
    // Subscribers asked under the old policy: whoever asks for what is no longer exposed is closed.
    if (policyChanged) for (const g of [...this.groups.values()]) if (this.check(g.request) !== null) this.closeGroup(g);
    this.scheduleFlush();
  }

  /**
   * A client message on the virtual topic (already cut out of the relay). Returns the frames
   * to write back to this client, in order.
   */
  onClientMessage(client: VirtualClient, msg: PhoenixMessage, text: string | null): Buffer[] {
    const m = readVirtualMessage(msg, text, client.vsn);
    if (m.event === EVENT_JOIN) return this.join(client, m, text === null);
    // A leave needs no params: a binary or over-long one is answered from the scanner's refs.
    if (m.event === EVENT_LEAVE) return this.leave(client, m);
    if (m.ref === null || m.ref === undefined) return [];
    return [frame(replyText(client.vsn, m, "error", refusalResponse({ reason: "unsupported_event", detail: `connmeter:occupancy takes only phx_join and phx_leave, not ${m.event}` })))];
  }

  /** The socket closed: its subscription ends. */
  dropSocket(client: VirtualClient): void {
    const s = this.sockets.get(client);
    if (s === undefined) return;
    if (s.sub !== null) this.unsubscribe(s.sub);
    this.sockets.delete(client);
  }

  /** The payload for a request, or why it is refused (the join reply and GET /occupancy both use it). */
  answer(request: OccupancyRequest): OccupancyPayload | Refusal {
    if (!this.enabled) return { reason: "not_enabled", detail: "the ConnectionPolicy of this workload has no spec.occupancy (or the operator has not pushed it yet)" };
    return this.check(request) ?? this.payload(request);
  }

  /** Parses join params `{topics?: [...], nodes?: bool}`; a string is the error. */
  static parseParams(payload: unknown): OccupancyRequest | Refusal {
    if (payload === undefined) return { reason: "too_many_topics", detail: `the join message is too long: ask for at most ${MAX_REQUESTED_TOPICS} topics` };
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return { reason: "bad_params", detail: "join params must be an object {topics: [...], nodes?: true}" };
    const { topics = [], nodes = false } = payload as Record<string, unknown>;
    if (!Array.isArray(topics)) return { reason: "bad_params", detail: "topics must be an array of topic names or exposed globs" };
    if (topics.length > MAX_REQUESTED_TOPICS) return { reason: "too_many_topics", detail: `ask for at most ${MAX_REQUESTED_TOPICS} topics, got ${topics.length}` };
    if (!topics.every((t) => typeof t === "string" && t.length > 0 && t.length <= MAX_TOPIC_NAME_LENGTH)) return { reason: "bad_params", detail: `topics must be non-empty strings of at most ${MAX_TOPIC_NAME_LENGTH} characters` };
    if (typeof nodes !== "boolean") return { reason: "bad_params", detail: "nodes must be a boolean" };
    return { topics: [...new Set(topics as string[])], nodes };
  }

  /**
   * This pod's joined channels per exposed glob and per topic a glob matches (busiest first,
   * at most {@link MAX_OCCUPANCY_KEYS} keys, globs always included): the `/stats` field the
   * operator sums. Undefined while no policy is in force.
   */
  localCounts(topics: Iterable<[string, number]>): Record<string, number> | undefined {
    if (!this.enabled) return undefined;
    const expose = this.policy!.expose;
    const globs = new Float64Array(expose.length);
    const matched: [string, number][] = [];
    // Globs run once per topic while it lives (the ledger's own rule), not once per scrape.
    const previous = this.globsOf;
    this.globsOf = new Map();
    for (const [topic, n] of topics) {
      const hits = previous.get(topic) ?? this.matchers.flatMap((m, i) => (m(topic) ? [i] : []));
      this.globsOf.set(topic, hits);
      for (const i of hits) globs[i] = globs[i]! + n;
      if (hits.length > 0 && topic.length <= MAX_TOPIC_NAME_LENGTH) matched.push([topic, n]);
    }
    const out = Object.create(null) as Record<string, number>;
    expose.forEach((g, i) => (out[g] = globs[i]!));
    if (matched.length > MAX_OCCUPANCY_KEYS - expose.length) matched.sort((a, b) => b[1] - a[1]);
    for (const [topic, n] of matched) {
      if (Object.keys(out).length >= MAX_OCCUPANCY_KEYS) break;
      if (!(topic in out)) out[topic] = n;
    }
    return out;
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.expiry !== null) clearTimeout(this.expiry);
    this.timer = this.expiry = null;
  }

  private readonly expire = (): void => {
    this.expiry = null;
    this.configure(null);
  };

  private join(client: VirtualClient, m: VirtualMessage, binary: boolean): Buffer[] {
    const state = this.socketState(client);
    const refusal = this.admitJoin(state, m.payload, binary);
    if ("reason" in refusal) {
      this.counters.refused++;
      return [frame(replyText(client.vsn, m, "error", refusalResponse(refusal)))];
    }
    const out: Buffer[] = [];
    // One channel per topic per socket, as Phoenix: the newer join closes the older.
    if (state.sub !== null) {
      out.push(frame(closeText(client.vsn, state.sub.joinRef)));
      this.unsubscribe(state.sub);
    }
    const sub = this.subscribe(client, m.joinRef, refusal.request);
    state.sub = sub;
    out.push(frame(replyText(client.vsn, m, "ok", refusal.payload)));
    return out;
  }

  private admitJoin(state: SocketState, params: unknown, binary: boolean): Refusal | { request: OccupancyRequest; payload: OccupancyPayload } {
    if (!this.enabled) return { reason: "not_enabled", detail: "the ConnectionPolicy of this workload has no spec.occupancy (or the operator has not pushed it yet)" };
    if (!this.takeToken(state)) return { reason: "rate_limited", detail: `at most ${JOIN_BURST} joins of connmeter:occupancy at once per socket, then one every ${JOIN_REFILL_MS / 1000}s` };
    if (binary) return { reason: "bad_params", detail: "join connmeter:occupancy with a JSON (text) message; binary ones are not read" };
    // Params that could not be read come from a message cut at its first 4 KiB.
    const request = OccupancyHub.parseParams(params);
    if ("reason" in request) return request;
    const answer = this.answer(request);
    return "reason" in answer ? answer : { request, payload: answer };
  }

  private leave(client: VirtualClient, m: VirtualMessage): Buffer[] {
    const state = this.sockets.get(client);
    const out = [frame(replyText(client.vsn, m, "ok", {}))];
    // A leave with a stale join_ref leaves nothing, as Phoenix ignores it; the reply still comes.
    if (state?.sub && (m.joinRef === null || m.joinRef === undefined || sameRef(m.joinRef, state.sub.joinRef))) {
      out.push(frame(closeText(client.vsn, state.sub.joinRef)));
      this.unsubscribe(state.sub);
      state.sub = null;
    }
    return out;
  }

  private check(request: OccupancyRequest): Refusal | null {
    const p = this.policy!;
    for (const t of request.topics) {
      if (!p.expose.includes(t) && !this.matchers.some((m) => m(t))) {
        return { reason: "not_exposed", topic: t, detail: `topic ${JSON.stringify(t)} is outside spec.occupancy.expose` };
      }
    }
    return null;
  }

  private payload(request: OccupancyRequest): OccupancyPayload {
    const p = this.policy!;
    const snap: OccupancySnapshot | undefined = p.snapshot;
    const topics: Record<string, number | null> = {};
    for (const t of request.topics) topics[t] = snap === undefined ? null : snap.counts[t] ?? 0;
    const out: OccupancyPayload = { topics, at: snap?.at ?? null };
    if (p.totals && snap?.total) out.total = { ...snap.total };
    if (request.nodes && snap !== undefined) {
      out.nodes = {};
      for (const n of snap.nodes) {
        const nodeTopics: Record<string, number> = {};
        for (const t of request.topics) if (t in n.counts) nodeTopics[t] = n.counts[t]!;
        out.nodes[n.name] = p.totals && n.connections !== undefined ? { connections: n.connections, channels: n.channels ?? 0, topics: nodeTopics } : { topics: nodeTopics };
      }
    }
    return out;
  }

  private subscribe(client: VirtualClient, joinRef: unknown, request: OccupancyRequest): Subscription {
    const key = `${client.vsn}\u0000${request.nodes ? 1 : 0}\u0000${request.topics.join("\u0000")}`;
    let group = this.groups.get(key);
    if (group === undefined) {
      group = { key, request, vsn: client.vsn, members: new Set(), lastCounts: countsKey(this.payload(request)) };
      this.groups.set(key, group);
    }
    const sub: Subscription = { client, joinRef, group };
    group.members.add(sub);
    this.subscribers++;
    return sub;
  }

  private unsubscribe(sub: Subscription): void {
    if (!sub.group.members.delete(sub)) return;
    this.subscribers--;
    if (sub.group.members.size === 0) this.groups.delete(sub.group.key);
  }

  private closeGroup(g: SubscriberGroup): void {
    for (const sub of [...g.members]) {
      sub.client.sendVirtual(frame(closeText(sub.client.vsn, sub.joinRef)));
      const state = this.sockets.get(sub.client);
      if (state !== undefined) state.sub = null;
      this.unsubscribe(sub);
    }
  }

  private closeAll(): void {
    for (const g of [...this.groups.values()]) this.closeGroup(g);
  }

  private socketState(client: VirtualClient): SocketState {
    let s = this.sockets.get(client);
    if (s === undefined) {
      s = { sub: null, tokens: JOIN_BURST, refilledAtMs: this.now() };
      this.sockets.set(client, s);
    }
    return s;
  }

  private takeToken(s: SocketState): boolean {
    const now = this.now();
    const earned = Math.floor((now - s.refilledAtMs) / JOIN_REFILL_MS);
    if (earned > 0) {
      s.tokens = Math.min(JOIN_BURST, s.tokens + earned);
      s.refilledAtMs = s.tokens === JOIN_BURST ? now : s.refilledAtMs + earned * JOIN_REFILL_MS;
    }
    if (s.tokens < 1) return false;
    s.tokens--;
    return true;
  }

  /** New counts arrived: push at once if the interval has passed since the last push, else when it does. */
  private scheduleFlush(): void {
    if (this.timer !== null || this.groups.size === 0) return;
    const waitMs = Math.max(0, this.lastFlushMs + this.policy!.intervalSeconds * 1000 - this.now());
    this.timer = setTimeout(this.flush, waitMs);
    this.timer.unref();
  }

  /** Encodes each group's payload once and writes the same frame to all its members, when its counts changed. */
  readonly flush = (): void => {
    this.timer = null;
    if (!this.enabled) return;
    this.lastFlushMs = this.now();
    for (const g of this.groups.values()) {
      const payload = this.payload(g.request);
      const counts = countsKey(payload);
      if (counts === g.lastCounts) continue;
      g.lastCounts = counts;
      const f = frame(pushText(g.vsn, OCCUPANCY_EVENT, payload));
      this.counters.encodes++;
      for (const sub of g.members) sub.client.sendVirtual(f);
      this.counters.pushes += g.members.size;
    }
  };
}

/** The counts of a payload without its time: a push goes out only when these change. */
function countsKey(p: OccupancyPayload): string {
  return JSON.stringify([p.total, p.topics, p.nodes]);
}

function refusalResponse(r: Refusal): Record<string, string> {
  return r.topic === undefined ? { reason: r.reason, detail: r.detail } : { reason: r.reason, detail: r.detail, topic: r.topic };
}

function frame(text: string): Buffer {
  return encodeTextFrame(text, false);
}

/** Refs compare by JSON value (the client echoes what it sent; strings in practice). */
function sameRef(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
