import type { TopicGroupSpec } from "../ledger/topic-groups.js";
import type { Limits } from "../limits/admission.js";
import { parseOccupancyPush } from "../occupancy/occupancy-push.js";
import { MAX_TTL_SECONDS, type OccupancyPush } from "./contract.js";

export type ConfigUpdate =
  | { ok: true; limits: Limits; topics: TopicGroupSpec[] | undefined; ttlSeconds: number | undefined; occupancy?: OccupancyPush | null; policy?: string }
  | { ok: false; error: string };

export { MAX_TTL_SECONDS };

/** A Kubernetes object name (DNS subdomain). */
const POLICY_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const LIMIT_FIELDS = {
  maxConnections: { min: 0, max: 10_000_000 },
  rejectAtPercent: { min: 1, max: 100 },
  upgradeRatePerSecond: { min: 0, max: 1_000_000 },
  upgradeBurst: { min: 1, max: 1_000_000 },
  joinRatePerSecond: { min: 0, max: 1_000_000 },
  joinBurst: { min: 1, max: 1_000_000 },
  podJoinRatePerSecond: { min: 0, max: 1_000_000 },
  podJoinBurst: { min: 1, max: 1_000_000 },
} as const satisfies Record<Exclude<keyof Limits, "connectionBudget">, { min: number; max: number }>;

/**
 * Validates a PUT /config body: a JSON object with any of the {@link Limits} fields,
 * `topics: [{match, maxChannels?}]` and `ttlSeconds` (how long the pushed values hold without
 * a refresh), merged over the current limits. Errors name the field and what it must be.
 */
export function parseConfigUpdate(body: string, current: Limits): ConfigUpdate {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch (err) {
    return { ok: false, error: `body is not JSON: ${(err as Error).message}` };
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return { ok: false, error: "body must be a JSON object" };
  const input = doc as Record<string, unknown>;
  const known = new Set([...Object.keys(LIMIT_FIELDS), "connectionBudget", "topics", "ttlSeconds", "occupancy", "policy"]);
  const unknown = Object.keys(input).filter((k) => !known.has(k));
  if (unknown.length > 0) return { ok: false, error: `unknown field(s) ${unknown.join(", ")}; allowed: ${[...known].join(", ")}` };
  const limits: Limits = { ...current };
  const budget = input.connectionBudget;
  if (budget !== undefined) {
    if (budget !== null && (typeof budget !== "number" || !Number.isInteger(budget) || budget < 0)) {
      return { ok: false, error: `connectionBudget must be a non-negative integer (this pod's share of the cluster cap) or null (no budget), got ${JSON.stringify(budget)}` };
    }
    limits.connectionBudget = budget;
  }
  for (const [field, range] of Object.entries(LIMIT_FIELDS) as [Exclude<keyof Limits, "connectionBudget">, { min: number; max: number }][]) {
    const v = input[field];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < range.min || v > range.max) {
      return { ok: false, error: `${field} must be an integer in ${range.min}..${range.max}, got ${JSON.stringify(v)}` };
    }
    limits[field] = v;
  }
  const ttlSeconds = input.ttlSeconds;
  if (ttlSeconds !== undefined && (typeof ttlSeconds !== "number" || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS)) {
    return { ok: false, error: `ttlSeconds must be an integer in 1..${MAX_TTL_SECONDS} (omit it for values that hold until replaced), got ${JSON.stringify(ttlSeconds)}` };
  }
  // --- occupancy (issue 17): absent keeps what is in force, null lifts it ---
  const occupancy = input.occupancy === undefined ? undefined : parseOccupancyPush(input.occupancy);
  if (typeof occupancy === "string") return { ok: false, error: occupancy };
  const withOccupancy = occupancy === undefined ? {} : { occupancy };
  // --- usage (issue 18): the pushing policy's name, the `policy` label of connmeter_policy_info ---
  const policy = input.policy;
  if (policy !== undefined && (typeof policy !== "string" || !POLICY_NAME.test(policy))) {
    return { ok: false, error: `policy must be the pushing ConnectionPolicy's name (a DNS subdomain, at most 253 characters), got ${JSON.stringify(policy)}` };
  }
  const named = policy === undefined ? {} : { policy };
  // --- end usage ---
  if (input.topics === undefined) return { ok: true, limits, topics: undefined, ttlSeconds, ...withOccupancy, ...named };
  const topics = parseTopics(input.topics);
  return typeof topics === "string" ? { ok: false, error: topics } : { ok: true, limits, topics, ttlSeconds, ...withOccupancy, ...named };
}

/** Topic groups from config or flags; a string is the error. */
export function parseTopics(value: unknown): TopicGroupSpec[] | string {
  if (!Array.isArray(value)) return "topics must be an array of {match, maxChannels?}";
  const out: TopicGroupSpec[] = [];
  const seen = new Set<string>();
  for (const [i, t] of value.entries()) {
    if (typeof t !== "object" || t === null) return `topics[${i}] must be an object {match, maxChannels?}`;
    const { match, maxChannels } = t as Record<string, unknown>;
    if (typeof match !== "string" || match === "") return `topics[${i}].match must be a non-empty glob such as "room:*"`;
    if (seen.has(match)) return `topics[${i}].match "${match}" appears twice; each group needs its own glob`;
    seen.add(match);
    if (maxChannels !== undefined && (typeof maxChannels !== "number" || !Number.isInteger(maxChannels) || maxChannels < 0)) {
      return `topics[${i}].maxChannels must be a non-negative integer, got ${JSON.stringify(maxChannels)}`;
    }
    out.push(maxChannels === undefined ? { match } : { match, maxChannels });
  }
  return out;
}
