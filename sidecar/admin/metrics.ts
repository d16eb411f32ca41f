import { readdir } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { END_CAUSES, JOIN_RESULTS, KIND_LONGPOLL, UNDECIDED_REASONS } from "../ledger/channel-ledger.js";
import type { Sidecar } from "../sidecar.js";
import { JOIN_LIMIT_SCOPES } from "../limits/join-throttle.js";

/**
 * The sidecar's Prometheus metrics. The data path only bumps plain numbers; every metric
 * here reads them in `collect()` at scrape time, so the hot path never calls `labels()`.
 * Topic labels are topic groups, then raw topics up to the label cap, then `_other`.
 */
export function createMetrics(sidecar: Sidecar): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "connmeter_" });
  replaceOpenFdsGauge(registry);
  replaceHandleGauges(registry);

  new Gauge({
    name: "connmeter_connections",
    help: "Open client connections through this sidecar, by transport.",
    labelNames: ["transport"],
    registers: [registry],
    collect() {
      this.set({ transport: "websocket" }, sidecar.connectionCount);
      this.set({ transport: "longpoll" }, sidecar.ledger.sockets[KIND_LONGPOLL]!);
    },
  });
  new Gauge({
    name: "connmeter_channels",
    help: "Joined Phoenix channels (confirmed joins), by topic group or topic.",
    labelNames: ["topic"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [topic, n] of Object.entries(sidecar.topicCounts())) this.set({ topic }, n);
    },
  });
  new Gauge({
    name: "connmeter_occupancy_subscribers",
    help: "Sockets subscribed to the virtual topic connmeter:occupancy (served by the sidecar; never in connmeter_channels).",
    registers: [registry],
    collect() {
      this.set(sidecar.occupancy.subscriberCount);
    },
  });
  new Gauge({
    name: "connmeter_max_connections",
    help: "Connection cap of this pod (0 = none).",
    registers: [registry],
    collect() {
      this.set(sidecar.admission.current.maxConnections);
    },
  });
  new Gauge({
    name: "connmeter_ready",
    help: "1 when /readyz admits new connections, 0 when at capacity or draining.",
    registers: [registry],
    collect() {
      this.set(sidecar.isReady() ? 1 : 0);
    },
  });
  new Gauge({
    name: "connmeter_config_pushed",
    help: "1 while limits pushed by PUT /config are in force, 0 while the sidecar's own flags are (a push expired or none came).",
    registers: [registry],
    collect() {
      this.set(sidecar.config.isPushed ? 1 : 0);
    },
  });
  new Gauge({
    name: "connmeter_handshakes",
    help: "Sockets connected to the public port that have not sent a whole request head yet (capped by --max-handshakes, each for at most --handshake-timeout-seconds).",
    registers: [registry],
    collect() {
      this.set(sidecar.handshakeCount);
    },
  });
  counterFrom(registry, "connmeter_handshakes_refused_total", "New connections closed at once because --max-handshakes sockets were still sending a request head.", [], () => [
    [{}, sidecar.counters.handshakesRefused],
  ]);
  // --- occupancy (issue 17) ---
  counterFrom(registry, "connmeter_occupancy_pushes_total", "Pushes of event occupancy written to subscribers of connmeter:occupancy.", [], () => [
    [{}, sidecar.occupancy.counters.pushes],
  ]);
  counterFrom(registry, "connmeter_occupancy_encodes_total", "Pushes of event occupancy encoded (one per distinct request per update, whatever the subscribers).", [], () => [
    [{}, sidecar.occupancy.counters.encodes],
  ]);
  counterFrom(registry, "connmeter_occupancy_joins_refused_total", "Joins of connmeter:occupancy refused by the sidecar (not exposed, rate-limited, bad params).", [], () => [
    [{}, sidecar.occupancy.counters.refused],
  ]);
  // --- end occupancy ---
  counterFrom(registry, "connmeter_connections_accepted_total", "WebSocket upgrades proxied to the app.", [], () => [[{}, sidecar.counters.accepted]]);
  counterFrom(registry, "connmeter_connections_rejected_total", "WebSocket upgrades refused, by reason.", ["reason"], () =>
    [...sidecar.counters.rejected].map(([reason, n]) => [{ reason }, n]),
  );
  counterFrom(registry, "connmeter_http_upstream_errors_total", "Plain HTTP requests answered 502 because the app was unreachable.", [], () => [
    [{}, sidecar.counters.httpUpstreamErrors],
  ]);
  counterFrom(registry, "connmeter_channel_joins_total", "Channel join outcomes: ok, error (refused by the app), refused (by the sidecar).", ["result"], () =>
    JOIN_RESULTS.map((result, i) => [{ result }, sidecar.ledger.joinsByResult[i]!]),
  );
  counterFrom(registry, "connmeter_joins_rate_limited_total", "Channel joins refused with phx_reply error rate_limited (join floods), by the bucket that was empty: socket (--join-rate) or pod (--pod-join-rate). Also counted in connmeter_channel_joins_total{result=\"refused\"}.", ["scope"], () =>
    JOIN_LIMIT_SCOPES.map((scope, i) => [{ scope }, sidecar.ledger.joinThrottle.refused[i]!]),
  );
  counterFrom(registry, "connmeter_channel_leaves_total", "Joined channels that ended, by cause.", ["cause"], () =>
    END_CAUSES.map((cause, i) => [{ cause }, sidecar.ledger.leavesByCause[i]!]),
  );
  // Usage (issue 18): exact to the collection instant, open sockets and channels included.
  counterFrom(registry, "connmeter_connection_seconds_total", "Connection-seconds (billing, cost attribution), by transport; open connections and long-poll sessions count up to the scrape.", ["transport"], () => [
    [{ transport: "websocket" }, sidecar.connectionSeconds()],
    [{ transport: "longpoll" }, sidecar.ledger.socketSeconds(KIND_LONGPOLL)],
  ]);
  new Gauge({
    name: "connmeter_policy_info",
    help: "1, labelled with the ConnectionPolicy whose pushed values are in force (absent on the flags): recording rules join usage to namespace and policy by it.",
    labelNames: ["policy"],
    registers: [registry],
    collect() {
      this.reset();
      const policy = sidecar.config.policyName;
      if (policy !== null) this.set({ policy }, 1);
    },
  });
  counterFrom(registry, "connmeter_channel_seconds_total", "Channel-seconds of joined channels by topic group (ungrouped: _other), long-poll ones included; open channels count up to the scrape.", ["group"], () =>
    sidecar.ledger.channelSeconds().map(([group, seconds]) => [{ group }, seconds]),
  );
  counterFrom(registry, "connmeter_unparsed_messages_total", "Messages relayed untouched that were not readable Phoenix messages, by direction.", ["direction"], () => [
    [{ direction: "client_to_server" }, sidecar.counters.unparsedFromClient],
    [{ direction: "server_to_client" }, sidecar.counters.unparsedFromServer],
  ]);
  counterFrom(
    registry,
    "connmeter_messages_undecided_total",
    "Messages the sidecar relayed without being able to decide them: field_too_long (a topic, event or ref over 64 KiB; a join among them is not counted), too_long_to_hold or context_takeover (a join over its group's budget that could not be cut out; it reached the app and is counted).",
    ["reason"],
    () => UNDECIDED_REASONS.map((reason, i) => [{ reason }, sidecar.ledger.undecided[i]!]),
  );
  counterFrom(registry, "connmeter_join_pauses_total", "Times a client's relay paused because 1024 of its joins awaited the app's reply; counts stay exact, the client waits.", [], () => [
    [{}, sidecar.ledger.joinPauses],
  ]);
  counterFrom(registry, "connmeter_leaves_forgotten_total", "Unanswered leaves forgotten past 256 per socket (a stale leave gets no reply); counts are unaffected.", [], () => [
    [{}, sidecar.ledger.leavesForgotten],
  ]);
  counterFrom(
    registry,
    "connmeter_messages_uninspected_total",
    "Compressed messages relayed but not read in full, by direction and reason (inflate_limit: the message inflated past the tap's cap, or came after one that did on a socket with context takeover, whose window the tap then gave up).",
    ["direction", "reason"],
    () => [
      [{ direction: "client_to_server", reason: "inflate_limit" }, sidecar.counters.uninspectedFromClient],
      [{ direction: "server_to_client", reason: "inflate_limit" }, sidecar.counters.uninspectedFromServer],
    ],
  );
  new Gauge({
    name: "connmeter_join_gate_held_bytes",
    help: "Bytes of client messages all sockets' join gates hold back while deciding whether each is a join to refuse, plus ~100 bytes per held read (bounded by a process-wide budget).",
    registers: [registry],
    collect() {
      this.set(sidecar.holdBudget.totalCost);
    },
  });
  counterFrom(registry, "connmeter_join_gate_budget_pauses_total", "Times a client's relay paused because all join gates together held more than the process-wide budget (the heaviest holder is paused).", [], () => [
    [{}, sidecar.holdBudget.pauses],
  ]);
  new Gauge({
    name: "connmeter_connections_uninspected",
    help: "Open WebSocket connections whose compressed messages the tap can no longer read in some direction (it gave up a deflate window past the inflate cap): their channel counts may miss joins or leaves until they close.",
    registers: [registry],
    collect() {
      this.set(sidecar.counters.uninspectedConnections);
    },
  });
  const durations = new Histogram({
    name: "connmeter_connection_duration_seconds",
    help: "Lifetime of closed WebSocket connections.",
    buckets: [1, 10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600],
    registers: [registry],
  });
  sidecar.onConnectionDuration = (seconds) => durations.observe(seconds);
  return registry;
}

/** How long one rendered /metrics page is served to every scrape (Prometheus scrapes every 15-60 s). */
export const METRICS_CACHE_MS = 1000;

/**
 * Renders a registry at most once per `maxAgeMs`; scrapes that arrive while a render runs share
 * it. A burst of scrapers (500 at once) thus costs one render, not 500 on the event loop that
 * relays the app's traffic. Values are at most `maxAgeMs` old.
 */
export class CachedMetrics {
  private text = "";
  private renderedAtMs = -Infinity;
  private rendering: Promise<string> | null = null;

  constructor(
    readonly registry: Registry,
    private readonly maxAgeMs = METRICS_CACHE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    if (this.now() - this.renderedAtMs < this.maxAgeMs) return Promise.resolve(this.text);
    this.rendering ??= this.registry.metrics().then(
      (text) => {
        this.text = text;
        this.renderedAtMs = this.now();
        this.rendering = null;
        return text;
      },
      (err: unknown) => {
        this.rendering = null;
        throw err;
      },
    );
    return this.rendering;
  }
}

type Sample = [labels: Record<string, string>, value: number];

/** A counter whose value is read from the data path's own totals at scrape time. */
function counterFrom(registry: Registry, name: string, help: string, labelNames: string[], read: () => Sample[]): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

/**
 * prom-client's process_open_fds lists /proc/self/fd with readdirSync at every scrape: with
 * two fds per proxied socket that blocked the event loop (and every socket's relay) for ~30 ms
 * at 10,000 sockets on a loaded machine, longer at 50,000, and made /metrics slow. The same
 * metric, listed off the event loop and in the background: a scrape reads the latest count
 * (at most {@link OPEN_FDS_MAX_AGE_MS} old) and starts a new listing when it is older; only
 * the first scrape waits for one.
 */
function replaceOpenFdsGauge(registry: Registry): void {
  const name = "connmeter_process_open_fds";
  if (registry.getSingleMetric(name) === undefined) return; // not Linux: prom-client has none either
  registry.removeSingleMetric(name);
  let count = NaN;
  let listedAt = -Infinity;
  let listing: Promise<void> | null = null;
  const list = (): Promise<void> =>
    (listing ??= readdir("/proc/self/fd")
      .then((fds) => void (count = fds.length - 1)) // minus the one the listing used
      .catch(() => undefined) // no /proc: the gauge stays unset
      .finally(() => {
        listedAt = performance.now();
        listing = null;
      }));
  new Gauge({
    name,
    help: `Number of open file descriptors (listed in the background, at most ${OPEN_FDS_MAX_AGE_MS / 1000} s old).`,
    registers: [registry],
    async collect() {
      if (performance.now() - listedAt > OPEN_FDS_MAX_AGE_MS) {
        const pending = list();
        if (Number.isNaN(count)) await pending;
      }
      if (!Number.isNaN(count)) this.set(count);
    },
  });
}

const OPEN_FDS_MAX_AGE_MS = 5000;

/** Every gauge of one render reads the same listing of the process's resources. */
interface ResourceSnapshot {
  resourcesByType: Map<string, number>;
  resources: number;
  /** Handles among the resources (neither requests nor timers): nodejs_active_handles_total. */
  handles: number;
}

/** How old the handles-by-type listing may be: listing each handle's owner object costs ~1 ms per 1,000 sockets. */
export const HANDLE_TYPES_MAX_AGE_MS = 60_000;

/**
 * prom-client's nodejs_active_handles, nodejs_active_handles_total, nodejs_active_resources and
 * nodejs_active_resources_total each list every handle in their own collect (twice
 * process._getActiveHandles(), which fetches the owner object of every handle, twice
 * process.getActiveResourcesInfo()): two handles per proxied socket, ~14 ms of the event loop
 * per scrape at 10,000 sockets (the bulk of a /metrics render there) and linear in them. The
 * same four metrics, names, help and labels unchanged:
 * - the resources by type and the three totals come from one getActiveResourcesInfo() per
 *   render (type names only, no owner objects), shared by the gauges of that render; the
 *   handles are the resources that are neither requests nor timers;
 * - the handles by type (named after their owners' constructors, as prom-client names them)
 *   need the owner objects, so that listing is taken at most every
 *   {@link HANDLE_TYPES_MAX_AGE_MS}; it is a leak-hunting breakdown, the total stays exact.
 */
function replaceHandleGauges(registry: Registry, now: () => number = () => performance.now()): void {
  const names = ["nodejs_active_handles", "nodejs_active_handles_total", "nodejs_active_resources", "nodejs_active_resources_total"].map((n) => `connmeter_${n}`);
  const help = new Map<string, string>();
  for (const name of names) {
    const existing = registry.getSingleMetric(name) as unknown as { help?: string } | undefined;
    if (existing === undefined) return; // a Node without these APIs: prom-client registered none
    help.set(name, existing.help ?? name);
  }
  for (const name of names) registry.removeSingleMetric(name);
  let snapshot: ResourceSnapshot | null = null;
  const take = (): ResourceSnapshot => {
    if (snapshot !== null) return snapshot;
    const taken = listResources();
    snapshot = taken;
    // Every collect of one render runs in the same synchronous pass, before any microtask.
    queueMicrotask(() => void (snapshot = null));
    return taken;
  };
  let handleTypes = new Map<string, number>();
  let handleTypesAt = -Infinity;
  const [handles, handlesTotal, resources, resourcesTotal] = names as [string, string, string, string];
  new Gauge({
    name: handles,
    help: `${help.get(handles)!} (listed at most every ${HANDLE_TYPES_MAX_AGE_MS / 1000} s; the total is exact)`,
    labelNames: ["type"],
    registers: [registry],
    collect() {
      if (now() - handleTypesAt >= HANDLE_TYPES_MAX_AGE_MS) {
        handleTypes = listHandleTypes();
        handleTypesAt = now();
      }
      this.reset();
      for (const [type, n] of handleTypes) this.set({ type }, n);
    },
  });
  new Gauge({
    name: handlesTotal,
    help: help.get(handlesTotal)!,
    registers: [registry],
    collect() {
      this.set(take().handles);
    },
  });
  new Gauge({
    name: resources,
    help: help.get(resources)!,
    labelNames: ["type"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [type, n] of take().resourcesByType) this.set({ type }, n);
    },
  });
  new Gauge({
    name: resourcesTotal,
    help: help.get(resourcesTotal)!,
    registers: [registry],
    collect() {
      this.set(take().resources);
    },
  });
}

/**
 * The resources by type. Node lists them as its requests, its referenced handles, then one
 * `Timeout` per timer and one `Immediate` per immediate; the handles are what is left once the
 * requests (few: process._getActiveRequests()) and the timers are taken away.
 */
function listResources(): ResourceSnapshot {
  const info = process.getActiveResourcesInfo();
  const resourcesByType = new Map<string, number>();
  for (const type of info) resourcesByType.set(type, (resourcesByType.get(type) ?? 0) + 1);
  const requests = (process as unknown as { _getActiveRequests(): unknown[] })._getActiveRequests().length;
  const timers = (resourcesByType.get("Timeout") ?? 0) + (resourcesByType.get("Immediate") ?? 0);
  return { resourcesByType, resources: info.length, handles: Math.max(0, info.length - requests - timers) };
}

/** Handles by their owner's constructor name, as prom-client's nodejs_active_handles groups them. */
function listHandleTypes(): Map<string, number> {
  const list = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  // Counted by prototype first (one Map look-up per handle; nearly all share Socket's), named after.
  const byPrototype = new Map<unknown, number>();
  for (const h of list) {
    if (h === null || typeof h !== "object") continue;
    const proto: unknown = Object.getPrototypeOf(h);
    byPrototype.set(proto, (byPrototype.get(proto) ?? 0) + 1);
  }
  const byType = new Map<string, number>();
  for (const [proto, n] of byPrototype) {
    const type = (proto as { constructor?: { name?: string } } | null)?.constructor?.name;
    if (type !== undefined) byType.set(type, (byType.get(type) ?? 0) + n);
  }
  return byType;
}
