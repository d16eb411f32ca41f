/**
 * The admin API between a sidecar and the operator (DESIGN.md "Contracts"), in one module both
 * sides import: the `/stats` document, the `PUT /config` body, the bearer token and its
 * per-namespace Secret, the bounds a `/stats` answer must stay within, and the topic-group
 * rules both sides apply the same way. The operator imports nothing else from sidecar/ (the
 * lint rule in eslint.config.js says so), so the sidecar's internals can change freely.
 *
 * It lives beside the admin server that serves it (not in a top-level folder) because the
 * sidecar owns the API, and the operator image already carries dist/sidecar for it.
 */
import { OTHER_TOPICS, TopicGroups, type TopicGroupSpec } from "../ledger/topic-groups.js";
import { OCCUPANCY_TOPIC } from "../phoenix/message.js";

export { OTHER_TOPICS, TopicGroups, type TopicGroupSpec };

/** `GET /stats`: DESIGN.md's fields, extended. Every count is a non-negative integer. */
export interface Stats {
  /** Open WebSocket connections through this sidecar. */
  connections: number;
  /** Joined channels (confirmed joins) over every socket, long-poll ones included. */
  channels: number;
  /** Live long-poll sessions. */
  longpoll: number;
  /** Joined channels per topic group, then per named topic, the rest under {@link OTHER_TOPICS}. */
  topics: Record<string, number>;
  ready: boolean;
  draining: boolean;
  maxConnections: number;
  unparsedMessages: number;
  /** Open connections whose compressed messages can no longer be read (their counts may be stale until they close). */
  uninspectedConnections: number;
  /** New upgrades are refused until the operator's first push (--await-budget-seconds). */
  awaitingBudget: boolean;
  /** Sockets subscribed to the virtual topic (issue 17); never part of `channels` or `topics`. */
  occupancySubscribers?: number;
  /**
   * Joined channels on this pod per exposed glob (the sum over its topics) and per topic an
   * exposed glob matches (at most {@link MAX_OCCUPANCY_KEYS}); present once the operator pushed
   * `occupancy`. The operator sums them into the cluster counts it pushes back.
   */
  occupancy?: Record<string, number>;
  // --- usage (issue 18) ---
  /** Usage counters since this sidecar started; absent from sidecars older than issue 18. */
  usage?: Usage;
  // --- end usage ---
  // --- flood detection (issue 18) ---
  /** Attempts since the sidecar started (counters; they restart with it, like `usage`). */
  attempts?: Attempts;
  // --- end flood detection ---
  /** What the sidecar enforces now; absent from sidecars older than it (the operator then pushes every interval). */
  config?: HeldConfig;
}

/**
 * `GET /stats` `config`: where the values in force come from, and their revision. The revision
 * changes with every PUT, DELETE and expiry and with every start of the sidecar; `PUT /config`
 * answers with the one it produced. While `/stats` reports that same revision, the sidecar
 * holds exactly what was pushed, so an unchanged config need not be pushed again before its
 * refresh is due (operator/controller/push-skip.ts).
 */
export interface HeldConfig {
  source: "flags" | "pushed";
  revision: string;
}

// --- flood detection (issue 18) ---
/** Counters of what clients attempted, refused ones included: the operator's spike detector reads their rates. */
export interface Attempts {
  /** WebSocket upgrades asked for (proxied or refused, any reason). */
  upgrades: number;
  /** Channel joins answered (ok, error by the app, refused by the sidecar). */
  joins: number;
  // --- rollout guard (issue 18): churn ---
  /** Joins the app answered with an error. */
  joinErrors?: number;
  /** WebSocket connections that closed. */
  disconnects?: number;
  /** Joined channels that ended while their socket stayed (leave, close, error, duplicate). */
  leaves?: number;
  // --- end rollout guard ---
}
// --- end flood detection ---

// --- usage (issue 18) ---
/**
 * A sidecar's usage counters (`GET /stats` `usage`), the same values as its
 * `connmeter_connection_seconds_total` and `connmeter_channel_seconds_total` at this instant.
 * They restart at 0 with the sidecar: a reader sums increases and tells a restart by `since`.
 */
export interface Usage {
  /** ISO 8601 time the counters started at 0 (the sidecar's start). */
  since: string;
  /** Seconds of WebSocket connections and long-poll sessions, open ones up to now. */
  connectionSeconds: number;
  /** Channel-seconds per topic group, ungrouped channels under {@link OTHER_TOPICS}. */
  channelSeconds: Record<string, number>;
}
// --- end usage ---

/** `PUT /config`: what the operator pushes to one sidecar; every field but `ttlSeconds` optional. */
export interface ConfigPush {
  /** The pod's own cap (limits.maxConnectionsPerPod), in connections; 0 = none. */
  maxConnections?: number;
  /** `/readyz` turns 503 at this percentage of the cap. */
  rejectAtPercent?: number;
  /** This pod's share of the cluster cap (limits.maxConnections), in connections; null lifts it. */
  connectionBudget?: number | null;
  /** Topic groups, each with this pod's share of the group's cap (in joined channels). */
  topics?: TopicGroupSpec[];
  /** Seconds the pushed values hold without a refresh; then the sidecar falls back to its flags. */
  ttlSeconds: number;
  /** spec.occupancy and the newest cluster counts (issue 17); null lifts it, absent keeps it. */
  occupancy?: OccupancyPush | null;
  // --- usage (issue 18) ---
  /** The pushing ConnectionPolicy's name: the sidecar exports it as connmeter_policy_info{policy}. */
  policy?: string;
  // --- end usage ---
  // --- join floods and throttling (issue 18): token buckets, in per second and tokens ---
  /** Per socket (spec.limits.joinRatePerSocket / joinBurstPerSocket). */
  joinRatePerSecond?: number;
  joinBurst?: number;
  /** Per pod (spec.limits.joinRatePerPod / joinBurstPerPod). */
  podJoinRatePerSecond?: number;
  podJoinBurst?: number;
  /** Upgrades per pod (only pushed while the operator throttles a flood). */
  upgradeRatePerSecond?: number;
  upgradeBurst?: number;
  // --- end join floods ---
}

// --- occupancy (issue 17): what the operator pushes for the virtual topic and GET /occupancy ---

export { OCCUPANCY_TOPIC };
/** The event of the sidecar's pushes on {@link OCCUPANCY_TOPIC}. */
export const OCCUPANCY_EVENT = "occupancy";
/** Globs of spec.occupancy.expose at most (the CRD's maxItems). */
export const MAX_OCCUPANCY_EXPOSE = 32;
/** Keys (globs and topics) of one pod's `/stats` occupancy and of a pushed snapshot's counts, at most. */
export const MAX_OCCUPANCY_KEYS = 1000;
/** Nodes in a pushed snapshot, at most (the status's own bound). */
export const MAX_OCCUPANCY_NODES = 200;

/** Counts of one node: its sidecars' sums. */
export interface OccupancyNode {
  name: string;
  /** Present only with spec.occupancy.totals. */
  connections?: number;
  channels?: number;
  /** Per exposed glob only (a per-node, per-topic list would be unbounded). */
  counts: Record<string, number>;
}

/** The exposed part of the operator's aggregate, as measured at `at`. */
export interface OccupancySnapshot {
  /** ISO 8601 time of the scrape the counts come from. */
  at: string;
  /** Present only with spec.occupancy.totals. */
  total?: { connections: number; channels: number };
  /** Cluster-wide joined channels per exposed glob and per topic one matches (busiest first, bounded). */
  counts: Record<string, number>;
  nodes: OccupancyNode[];
}

/** `PUT /config` field `occupancy`: the policy (spec.occupancy with defaults) and, once measured, the counts. */
export interface OccupancyPush {
  expose: string[];
  totals: boolean;
  intervalSeconds: number;
  snapshot?: OccupancySnapshot;
}
/** An object of at most {@link MAX_OCCUPANCY_KEYS} counts keyed by topic or glob, made without a prototype; a string is the error. */
export function parseOccupancyCounts(value: unknown, where: string): Record<string, number> | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return `${where} must be an object of counts`;
  const entries = Object.entries(value);
  if (entries.length > MAX_OCCUPANCY_KEYS) return `${where} has ${entries.length} entries, over ${MAX_OCCUPANCY_KEYS}`;
  const out = Object.create(null) as Record<string, number>;
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_TOPIC_NAME_LENGTH || !isCount(v)) return `${where}[${JSON.stringify(k.slice(0, 80))}] must be a count under a topic name`;
    out[k] = v;
  }
  return out;
}
// --- end occupancy ---

/**
 * Longest `ttlSeconds` a PUT may carry: the largest delay a Node timer can wait (2^31-1 ms).
 * An operator refreshes every few scrape intervals, so real TTLs are seconds to minutes.
 */
export const MAX_TTL_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** The sidecar's env var holding its admin token. */
export const ADMIN_TOKEN_ENV = "CONNMETER_ADMIN_TOKEN";
/** The Secret, in each app namespace, whose {@link ADMIN_TOKEN_SECRET_KEY} is that namespace's token. */
export const ADMIN_TOKEN_SECRET = "connmeter-admin-token";
export const ADMIN_TOKEN_SECRET_KEY = "token";

/** The `Authorization` header value carrying `token`. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** The token of an `Authorization: Bearer <token>` header; "" when absent or of another scheme. */
export function bearerToken(header: string | undefined): string {
  return header?.startsWith("Bearer ") ? header.slice(7) : "";
}

/**
 * Bounds of a `/stats` answer: the operator reads one per pod per interval, so one pod must
 * not be able to exhaust it. A sidecar stays far inside them (it names at most
 * {@link MAX_NAMED_TOPICS} topics and folds longer names into {@link OTHER_TOPICS}).
 */
export const MAX_STATS_BYTES = 1024 * 1024;
/** Entries of `topics` the operator accepts in one answer. */
export const MAX_STATS_TOPICS = 10_000;
/** Named (ungrouped) topics a sidecar lists at most (`--max-topic-labels` is capped here). */
export const MAX_NAMED_TOPICS = 5_000;
/** Longest topic name, in UTF-16 code units, listed by name; a longer one counts under {@link OTHER_TOPICS}. */
export const MAX_TOPIC_NAME_LENGTH = 1024;

/** Whether `v` is a count: a non-negative safe integer. */
export function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}
