import { once } from "node:events";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ChannelLedger, END_SOCKET_CLOSE, JOIN_ERROR, KIND_LONGPOLL, KIND_WEBSOCKET } from "./ledger/channel-ledger.js";
import { TopicGroups, type TopicGroupSpec } from "./ledger/topic-groups.js";
import { MAX_TOPIC_NAME_LENGTH, OTHER_TOPICS, type HeldConfig, type Stats, type Usage } from "./admin/contract.js";
import { PushedConfig } from "./admin/pushed-config.js";
import type { HostPort } from "./cli-flags.js";
import { Admission, REFUSE_REASONS, REFUSE_UPSTREAM, type Limits, type Refusal } from "./limits/admission.js";
import { LongPollTracker } from "./longpoll/longpoll-tracker.js";
import { OccupancyHub } from "./occupancy/occupancy-hub.js";
import { vsnFromUrl } from "./phoenix/message.js";
import { ProxyServer } from "./proxy/http-proxy.js";
import { endWithText } from "./proxy/raw-http.js";
import { DEFAULT_HOLD_BUDGET_BYTES, HoldBudget } from "./proxy/hold-budget.js";
import { INFLATE_SLICE_BYTES, MAX_INFLATED_MESSAGE_BYTES, TappedConnection, type ConnectionObserver, type TapOptions } from "./proxy/tapped-connection.js";
import { parseDeflateExtension } from "./ws/frame-reader.js";
import { InflateBudget } from "./ws/inflate-budget.js";

export type { HostPort };

export interface SidecarOptions {
  /** Public port: HTTP and WebSocket traffic for the app. */
  listen: HostPort;
  /** The app, e.g. http://127.0.0.1:4000. */
  upstream: string;
  limits: Limits;
  topics: TopicGroupSpec[];
  /** Ungrouped topics listed by name in /stats and metrics before the rest fold into `_other`. */
  maxTopicLabels: number;
  /** A long-poll session with no request for this long is over (Phoenix drops it then too). */
  longpollTimeoutSeconds: number;
  now?: () => number;
  /** Operational log lines (config source changes); default: stdout with a timestamp. */
  log?: (message: string) => void;
  /** Sockets that have not sent a whole request head yet, at most (default {@link DEFAULT_MAX_HANDSHAKES}). */
  maxHandshakes?: number;
  /** Seconds a socket may take to send a whole request head (default {@link DEFAULT_HANDSHAKE_TIMEOUT_SECONDS}). */
  handshakeTimeoutSeconds?: number;
  /** Until the operator's first PUT /config or this many seconds, refuse new upgrades and report not ready; 0 (default) = off. */
  awaitBudgetSeconds?: number;
  /**
   * false: relay WebSocket bytes without parsing them (no counts, no join refusal): the bare
   * relay the benchmark measures the tap's cost against. Default true.
   */
  tap?: boolean;
  /** Bytes all sockets' inflaters together may produce per turn of the event loop (default {@link INFLATE_SLICE_BYTES}). */
  inflateBytesPerTurn?: number;
  /** Inflated bytes of one message past which it is not read further (default {@link MAX_INFLATED_MESSAGE_BYTES}). */
  maxInflatedMessageBytes?: number;
  /** Bytes (and parts, at ~100 bytes each) all sockets' join gates together may hold back (default {@link DEFAULT_HOLD_BUDGET_BYTES}). */
  holdBudgetBytes?: number;
}

/**
 * Sockets still sending their first request head (an upgrade or plain HTTP: it cannot be told
 * before the head is complete) are capped apart from --max-connections, which counts proxied
 * WebSockets and upgrades waiting for the app: counting them there would let anyone who opens
 * TCP connections and sends nothing refuse real clients' upgrades and turn /readyz off. Past
 * the cap a new connection is closed at once; under it, each is closed when its head is not
 * complete within the handshake timeout (silent sockets included), so a flood of half-sent
 * requests holds at most this many sockets for at most that long.
 */
export const DEFAULT_MAX_HANDSHAKES = 1000;
export const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 10;

export { OTHER_TOPICS, type Stats };

/**
 * The sidecar's data path: the public server that proxies HTTP and WebSocket traffic to the
 * app, the admission checks in front of upgrades, the tapped connections, and the ledger
 * their messages feed. The admin server reads it; main.ts wires both.
 */
export class Sidecar implements ConnectionObserver {
  readonly ledger: ChannelLedger;
  readonly admission: Admission;
  readonly longpoll: LongPollTracker;
  /** Limits and topic groups pushed by PUT /config, and when they fall back to the flags. */
  readonly config: PushedConfig;
  /** The virtual topic connmeter:occupancy and GET /occupancy (issue 17), from the operator's pushes. */
  readonly occupancy: OccupancyHub;
  /** Accepted upgrades, refused upgrades by reason, unparsed messages by direction. */
  readonly counters = {
    accepted: 0,
    rejected: new Map<string, number>(REFUSE_REASONS.map((r) => [r, 0])),
    unparsedFromClient: 0,
    unparsedFromServer: 0,
    /** Compressed messages not read in full: they inflated past the cap, or followed one that did. */
    uninspectedFromClient: 0,
    uninspectedFromServer: 0,
    /** Open connections whose compressed messages can no longer be read in some direction. */
    uninspectedConnections: 0,
    connectionSecondsClosed: 0,
    /** Plain HTTP requests answered 502 because the app was unreachable. */
    httpUpstreamErrors: 0,
    /** New connections closed at once because too many sockets were still sending a request head. */
    handshakesRefused: 0,
  };
  /** Called with each closed connection's lifetime (the metrics histogram observes it). */
  onConnectionDuration: ((seconds: number) => void) | null = null;
  private readonly connections = new Set<TappedConnection>();
  /** Sockets that have not sent a whole request head yet. */
  private readonly handshaking = new Set<Socket>();
  private readonly maxHandshakes: number;
  private readonly handshakeTimeoutMs: number;
  /** Sum of open connections' start times, so connection-seconds cost O(1) per scrape. */
  private openedAtSumMs = 0;
  private upgradesInFlight = 0;
  private readonly server: http.Server;
  private readonly proxy: ProxyServer;
  private maxTopicLabels: number;
  private awaitBudgetTimer: NodeJS.Timeout | undefined;
  /** Shared by every connection: the process-wide hold and inflate budgets. */
  readonly holdBudget: HoldBudget;
  readonly inflateBudget: InflateBudget;
  private readonly tapOptions: TapOptions;
  readonly now: () => number;
  /** When the usage counters started (this process's start): a reader of /stats sees a restart by it. */
  readonly startedAtMs: number;

  constructor(private readonly options: SidecarOptions) {
    this.now = options.now ?? Date.now;
    this.occupancy = new OccupancyHub(this.now);
    this.holdBudget = new HoldBudget(options.holdBudgetBytes ?? DEFAULT_HOLD_BUDGET_BYTES);
    this.inflateBudget = new InflateBudget(options.inflateBytesPerTurn ?? INFLATE_SLICE_BYTES);
    this.tapOptions = {
      tap: options.tap ?? true,
      holdBudget: this.holdBudget,
      inflateBudget: this.inflateBudget,
      maxInflatedMessageBytes: options.maxInflatedMessageBytes ?? MAX_INFLATED_MESSAGE_BYTES,
      virtual: this.occupancy,
    };
    this.ledger = new ChannelLedger(new TopicGroups(options.topics), this.now);
    this.startedAtMs = this.now();
    const awaitBudgetSeconds = options.awaitBudgetSeconds ?? 0;
    this.admission = new Admission(options.limits, this.now, awaitBudgetSeconds);
    this.ledger.joinThrottle.configure(options.limits);
    this.maxTopicLabels = options.maxTopicLabels;
    const flags = { limits: { ...options.limits }, topics: [...options.topics] };
    const log = options.log ?? logToStdout;
    this.config = new PushedConfig(this, flags, log, this.now);
    if (awaitBudgetSeconds > 0) {
      // Only a log line: the admission check ends the wait by the clock on its own.
      this.awaitBudgetTimer = setTimeout(() => {
        if (!this.admission.isAwaitingBudget) return;
        log(`await-budget: no PUT /config within ${awaitBudgetSeconds}s; admitting on the flags' limits`);
      }, awaitBudgetSeconds * 1000 + 50);
      this.awaitBudgetTimer.unref();
    }
    this.longpoll = new LongPollTracker(this.ledger, options.longpollTimeoutSeconds * 1000, this);
    this.proxy = new ProxyServer(options.upstream, {
      onWebSocketOpen: (url, client, upstream, extensions) => this.onWebSocketOpen(url, client, upstream, extensions),
      onUpstreamError: (upgrade) => (upgrade ? this.countRejected(REFUSE_UPSTREAM) : this.counters.httpUpstreamErrors++),
      onUpgradeSettled: () => this.upgradesInFlight--,
      // Joins may be refused, or virtual-topic messages cut: the client must compress without context takeover.
      refusesJoins: () => this.ledger.hasBudgets || this.occupancy.enabled,
      longpoll: this.longpoll,
    });
    this.maxHandshakes = options.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES;
    this.handshakeTimeoutMs = (options.handshakeTimeoutSeconds ?? DEFAULT_HANDSHAKE_TIMEOUT_SECONDS) * 1000;
    // Node checks request-head deadlines every connectionsCheckingInterval (30 s by default, which
    // made a 60 s headersTimeout hold a half-sent request ~87 s): check every second.
    this.server = http.createServer({ connectionsCheckingInterval: 1000 }, this.onRequest);
    this.server.on("connection", this.onConnection);
    this.server.on("upgrade", this.onUpgrade);
    // Long-lived requests (long-poll, slow uploads) and sockets: no deadline once the head is in.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = this.handshakeTimeoutMs;
    this.server.keepAliveTimeout = 65_000;
  }

  async start(): Promise<HostPort> {
    this.server.listen(this.options.listen.port, this.options.listen.host);
    await once(this.server, "listening");
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Sockets connected that have not sent a whole request head yet. */
  get handshakeCount(): number {
    return this.handshaking.size;
  }

  /** Open WebSocket connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connection-seconds of every WebSocket connection so far, open ones up to now (billing). */
  connectionSeconds(): number {
    const openMs = this.connections.size * this.now() - this.openedAtSumMs;
    return this.counters.connectionSecondsClosed + openMs / 1000;
  }

  /** Connection-seconds of WebSockets and long-poll sessions, and channel-seconds, so far (GET /stats). */
  usage(): Usage {
    return {
      since: new Date(this.startedAtMs).toISOString(),
      connectionSeconds: this.connectionSeconds() + this.ledger.socketSeconds(KIND_LONGPOLL),
      channelSeconds: Object.fromEntries(this.ledger.channelSeconds()),
    };
  }

  isReady(): boolean {
    return this.admission.isReady(this.connections.size);
  }

  /** Applies limits and topic groups pushed by the operator, without a restart. */
  configure(limits: Limits, topics: TopicGroupSpec[] | undefined, maxTopicLabels?: number): void {
    this.admission.update(limits);
    this.ledger.joinThrottle.configure(limits);
    if (topics !== undefined) this.ledger.setGroups(new TopicGroups(topics));
    if (maxTopicLabels !== undefined) this.maxTopicLabels = maxTopicLabels;
  }

  /**
   * Joined channels per topic group, then per topic up to the label cap, the rest as `_other`.
   * A topic name longer than {@link MAX_TOPIC_NAME_LENGTH} is never listed: it counts under
   * `_other`, so a client cannot inflate /stats or the metrics with huge names.
   */
  topicCounts(maxNamed = this.maxTopicLabels): Record<string, number> {
    const out: Record<string, number> = {};
    const groups = this.ledger.topicGroups;
    for (let g = 0; g < groups.size; g++) out[groups.name(g)] = this.ledger.groupChannels(g);
    let named = 0;
    let other = 0;
    this.ledger.forEachUngroupedTopic((topic, n) => {
      if (named < maxNamed && topic.length <= MAX_TOPIC_NAME_LENGTH) {
        named++;
        out[topic] = n;
      } else {
        other += n;
      }
    });
    if (other > 0) out[OTHER_TOPICS] = other;
    return out;
  }

  stats(): Stats {
    return {
      connections: this.connections.size,
      channels: this.ledger.channels,
      longpoll: this.ledger.sockets[KIND_LONGPOLL]!,
      topics: this.topicCounts(),
      ready: this.isReady(),
      draining: this.admission.isDraining,
      maxConnections: this.admission.current.maxConnections,
      unparsedMessages: this.counters.unparsedFromClient + this.counters.unparsedFromServer,
      uninspectedConnections: this.counters.uninspectedConnections,
      awaitingBudget: this.admission.isAwaitingBudget,
      ...this.occupancyStats(),
      usage: this.usage(),
      attempts: {
        upgrades: this.counters.accepted + [...this.counters.rejected.values()].reduce((a, b) => a + b, 0),
        joins: this.ledger.joinsByResult.reduce((a, b) => a + b, 0),
        joinErrors: this.ledger.joinsByResult[JOIN_ERROR]!,
        disconnects: this.counters.accepted - this.connections.size,
        leaves: this.ledger.leavesByCause.reduce((a, b) => a + b, 0) - this.ledger.leavesByCause[END_SOCKET_CLOSE]!,
      },
      config: this.heldConfig(),
    };
  }

  private heldConfig(): HeldConfig {
    const { source, revision } = this.config.provenance();
    return { source, revision };
  }

  /** The virtual topic's part of /stats: its subscribers apart, and this pod's exposed counts. */
  private occupancyStats(): Pick<Stats, "occupancySubscribers" | "occupancy"> {
    const counts = this.occupancy.localCounts(this.ledger.topics());
    return { occupancySubscribers: this.occupancy.subscriberCount, ...(counts === undefined ? {} : { occupancy: counts }) };
  }

  /**
   * SIGTERM: readiness off and no new upgrades at once; open sockets get until the deadline
   * to leave by themselves, then a close 1001. Resolves with how it ended.
   */
  async drain(deadlineMs: number): Promise<"graceful" | "forced"> {
    this.admission.startDraining();
    const until = this.now() + deadlineMs;
    while (this.connections.size > 0 && this.now() < until) await sleep(Math.min(200, deadlineMs));
    if (this.connections.size === 0) return "graceful";
    for (const c of this.connections) c.goAway();
    const cutAt = this.now() + 2000;
    while (this.connections.size > 0 && this.now() < cutAt) await sleep(50);
    for (const c of this.connections) c.destroy();
    return "forced";
  }

  async close(): Promise<void> {
    clearTimeout(this.awaitBudgetTimer);
    this.config.close();
    this.occupancy.close();
    for (const c of this.connections) c.destroy();
    this.longpoll.close();
    this.proxy.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  onUnparsed(fromClient: boolean): void {
    if (fromClient) this.counters.unparsedFromClient++;
    else this.counters.unparsedFromServer++;
  }

  onUninspected(connection: TappedConnection, fromClient: boolean, contextLost: boolean): void {
    if (fromClient) this.counters.uninspectedFromClient++;
    else this.counters.uninspectedFromServer++;
    if (contextLost && !connection.uninspected) {
      connection.uninspected = true;
      this.counters.uninspectedConnections++;
    }
  }

  onConnectionClosed(connection: TappedConnection): void {
    if (!this.connections.delete(connection)) return;
    if (connection.uninspected) this.counters.uninspectedConnections--;
    this.openedAtSumMs -= connection.openedAtMs;
    const seconds = (this.now() - connection.openedAtMs) / 1000;
    this.counters.connectionSecondsClosed += seconds;
    this.onConnectionDuration?.(seconds);
  }

  private readonly onConnection = (socket: Socket): void => {
    if (this.handshaking.size >= this.maxHandshakes) {
      this.counters.handshakesRefused++;
      socket.destroy();
      return;
    }
    this.handshaking.add(socket);
    // headersTimeout covers a head that has started; this idle timeout also covers a socket
    // that sends nothing (Node then destroys it: nobody listens for 'timeout').
    socket.setTimeout(this.handshakeTimeoutMs);
    socket.once("close", () => this.handshaking.delete(socket));
  };

  /** A socket's request head is complete: it no longer counts as handshaking, and may idle. */
  private headComplete(socket: Duplex): void {
    if (this.handshaking.delete(socket as Socket)) (socket as Socket).setTimeout(0);
  }

  private readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.headComplete(req.socket);
    this.proxy.onRequest(req, res);
  };

  private readonly onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    this.headComplete(socket);
    const refusal = this.admission.checkUpgrade(this.connections.size + this.upgradesInFlight);
    if (refusal !== null) {
      this.refuse(socket, refusal);
      return;
    }
    this.upgradesInFlight++;
    this.proxy.upgrade(req, socket as Socket, head);
  };

  private onWebSocketOpen(url: string | undefined, client: Duplex, upstream: Duplex, extensions: string | undefined): void {
    const channels = this.ledger.openSocket(KIND_WEBSOCKET);
    const nowMs = this.now();
    const connection = new TappedConnection(client, upstream, channels, vsnFromUrl(url), parseDeflateExtension(extensions), this, nowMs, this.tapOptions);
    this.connections.add(connection);
    this.openedAtSumMs += nowMs;
    this.counters.accepted++;
    connection.start();
  }

  private refuse(socket: Duplex, refusal: Refusal): void {
    this.countRejected(refusal.reason);
    const status = refusal.statusCode === 429 ? "429 Too Many Requests" : "503 Service Unavailable";
    const body = `connmeter: upgrade refused (${refusal.reason}); retry in ${refusal.retryAfterSeconds}s\n`;
    endWithText(socket, status, body, ["Retry-After", String(refusal.retryAfterSeconds)]);
  }

  private countRejected(reason: string): void {
    this.counters.rejected.set(reason, (this.counters.rejected.get(reason) ?? 0) + 1);
  }
}

function logToStdout(message: string): void {
  console.log(`${new Date().toISOString()} connmeter-sidecar ${message}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
