import { ADMIN_TOKEN_ENV, MAX_NAMED_TOPICS, type TopicGroupSpec } from "./admin/contract.js";
import { ConfigError, flagUsage, parseHostPort, readFlags, type HostPort } from "./cli-flags.js";
import { DEFAULT_LIMITS, type Limits } from "./limits/admission.js";

export { ConfigError, flagUsage, parseHostPort, readFlags, type FlagSpec } from "./cli-flags.js";

/** Everything main.ts needs to start a sidecar. */
export interface SidecarConfig {
  listen: HostPort;
  upstream: string;
  admin: HostPort;
  limits: Limits;
  topics: TopicGroupSpec[];
  maxTopicLabels: number;
  drainSeconds: number;
  longpollTimeoutSeconds: number;
  maxHandshakes: number;
  handshakeTimeoutSeconds: number;
  adminToken: string | undefined;
  /** Seconds new upgrades wait for the operator's first push; 0 = off. */
  awaitBudgetSeconds: number;
  /** false: relay WebSocket bytes without parsing them (benchmarks only: nothing is counted). */
  tap: boolean;
  /** Process-wide inflate budget per turn of the event loop, and the per-message inflate cap. */
  inflateBytesPerTurn: number;
  maxInflatedMessageBytes: number;
}

/** Each flag, its env var and default. Flags win over env vars. */
const FLAGS = {
  listen: { env: "CONNMETER_LISTEN", default: "0.0.0.0:4001", help: "public port (HTTP + WebSocket to the app)" },
  upstream: { env: "CONNMETER_UPSTREAM", default: "http://127.0.0.1:4000", help: "the app container" },
  admin: { env: "CONNMETER_ADMIN", default: "0.0.0.0:9090", help: "admin port: /metrics /stats /healthz /readyz /config" },
  "max-connections": { env: "CONNMETER_MAX_CONNECTIONS", default: "0", help: "refuse upgrades past this many open connections (0 = no cap)" },
  "reject-at-percent": { env: "CONNMETER_REJECT_AT_PERCENT", default: "90", help: "/readyz turns 503 at this % of --max-connections" },
  "upgrade-rate": { env: "CONNMETER_UPGRADE_RATE", default: "0", help: "sustained upgrades per second admitted (0 = unlimited)" },
  "upgrade-burst": { env: "CONNMETER_UPGRADE_BURST", default: "100", help: "upgrades admitted in a burst above --upgrade-rate" },
  // --- join floods (issue 18) ---
  "join-rate": { env: "CONNMETER_JOIN_RATE", default: "0", help: "sustained channel joins per second one socket may send; more get phx_reply error rate_limited (0 = unlimited)" },
  "join-burst": { env: "CONNMETER_JOIN_BURST", default: "20", help: "joins one socket may send in a burst above --join-rate" },
  "pod-join-rate": { env: "CONNMETER_POD_JOIN_RATE", default: "0", help: "sustained channel joins per second over all sockets of the pod (0 = unlimited)" },
  "pod-join-burst": { env: "CONNMETER_POD_JOIN_BURST", default: "200", help: "joins the pod admits in a burst above --pod-join-rate" },
  // --- end join floods ---
  "topic-group": { env: "CONNMETER_TOPIC_GROUPS", default: "", help: "topic group glob[=maxChannels], repeatable (env: comma-separated)" },
  "max-topic-labels": { env: "CONNMETER_MAX_TOPIC_LABELS", default: "100", help: "ungrouped topics named in /stats and metrics before `_other`" },
  "drain-seconds": { env: "CONNMETER_DRAIN_SECONDS", default: "25", help: "on SIGTERM, how long open sockets may stay before a 1001 close" },
  "longpoll-timeout-seconds": { env: "CONNMETER_LONGPOLL_TIMEOUT_SECONDS", default: "20", help: "a long-poll session idle this long is over (Phoenix: 2 poll windows)" },
  "max-handshakes": { env: "CONNMETER_MAX_HANDSHAKES", default: "1000", help: "sockets still sending their request head, at most; past it new connections are closed" },
  "handshake-timeout-seconds": { env: "CONNMETER_HANDSHAKE_TIMEOUT_SECONDS", default: "10", help: "a socket must send its whole request head within this" },
  "inflate-bytes-per-turn": { env: "CONNMETER_INFLATE_BYTES_PER_TURN", default: String(256 * 1024), help: "bytes all sockets together inflate per event-loop turn (permessage-deflate); more waits for the next turn, so bombs cannot stall other sockets" },
  "max-inflated-message-bytes": { env: "CONNMETER_MAX_INFLATED_MESSAGE_BYTES", default: String(16 * 1024 * 1024), help: "a compressed message is read only up to this many inflated bytes (relayed whole, counted uninspected)" },
  tap: { env: "CONNMETER_TAP", default: "on", help: "on, or off: relay WebSocket bytes unparsed, nothing counted (the bare relay benchmarks compare against)" },
  "await-budget-seconds": { env: "CONNMETER_AWAIT_BUDGET_SECONDS", default: "0", help: "until the operator's first PUT /config or this many seconds, refuse new upgrades (503) and report not ready (0 = off)" },
} as const;

type FlagName = keyof typeof FLAGS;

/** Usage text for --help and for errors. */
export function usage(): string {
  return flagUsage("connmeter-sidecar", FLAGS, [`  env ${ADMIN_TOKEN_ENV}         bearer token that guards PUT/DELETE /config, GET /stats and GET /config`]);
}

/** Reads flags, then env vars, then defaults; throws ConfigError naming the bad input and the fix. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): SidecarConfig | "help" {
  const flags = readFlags<FlagName>(FLAGS, argv, env, usage(), ["topic-group"]);
  if (flags === "help") return "help";
  const { get } = flags;
  const groupArgs = flags.all("topic-group");
  const groups = groupArgs.length > 0 ? groupArgs : get("topic-group").split(",").filter((s) => s.trim() !== "");
  return {
    listen: parseHostPort("listen", get("listen")),
    upstream: parseUpstream(get("upstream")),
    admin: parseHostPort("admin", get("admin")),
    limits: {
      ...DEFAULT_LIMITS,
      maxConnections: parseInteger("max-connections", get("max-connections"), 0),
      rejectAtPercent: parseInteger("reject-at-percent", get("reject-at-percent"), 1, 100),
      upgradeRatePerSecond: parseInteger("upgrade-rate", get("upgrade-rate"), 0),
      upgradeBurst: parseInteger("upgrade-burst", get("upgrade-burst"), 1),
      joinRatePerSecond: parseInteger("join-rate", get("join-rate"), 0, 1_000_000),
      joinBurst: parseInteger("join-burst", get("join-burst"), 1, 1_000_000),
      podJoinRatePerSecond: parseInteger("pod-join-rate", get("pod-join-rate"), 0, 1_000_000),
      podJoinBurst: parseInteger("pod-join-burst", get("pod-join-burst"), 1, 1_000_000),
    },
    topics: groups.map(parseTopicGroup),
    maxTopicLabels: parseInteger("max-topic-labels", get("max-topic-labels"), 0, MAX_NAMED_TOPICS),
    drainSeconds: parseInteger("drain-seconds", get("drain-seconds"), 0),
    longpollTimeoutSeconds: parseInteger("longpoll-timeout-seconds", get("longpoll-timeout-seconds"), 1),
    maxHandshakes: parseInteger("max-handshakes", get("max-handshakes"), 1),
    handshakeTimeoutSeconds: parseInteger("handshake-timeout-seconds", get("handshake-timeout-seconds"), 1, 3600),
    adminToken: env[ADMIN_TOKEN_ENV],
    awaitBudgetSeconds: parseInteger("await-budget-seconds", get("await-budget-seconds"), 0, 3600),
    tap: parseOnOff("tap", get("tap")),
    inflateBytesPerTurn: parseInteger("inflate-bytes-per-turn", get("inflate-bytes-per-turn"), 1024, 1 << 30),
    maxInflatedMessageBytes: parseInteger("max-inflated-message-bytes", get("max-inflated-message-bytes"), 1024, Number.MAX_SAFE_INTEGER),
  };
}

function parseUpstream(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--upstream must be a URL such as http://127.0.0.1:4000, got "${value}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`--upstream must use http:// or https:// (WebSockets are upgraded from it), got "${value}"`);
  }
  return url.toString().replace(/\/$/, "");
}

function parseInteger(flag: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${flag} must be an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? "∞" : max}, got "${value}"`);
  }
  return n;
}

function parseOnOff(flag: string, value: string): boolean {
  if (value === "on" || value === "off") return value === "on";
  throw new ConfigError(`--${flag} must be on or off, got "${value}"`);
}

function parseTopicGroup(spec: string): TopicGroupSpec {
  const [match, max] = spec.trim().split("=");
  if (match === undefined || match === "") throw new ConfigError(`--topic-group must be glob[=maxChannels] such as room:*=1000, got "${spec}"`);
  return max === undefined ? { match } : { match, maxChannels: parseInteger("topic-group maxChannels", max, 0) };
}
