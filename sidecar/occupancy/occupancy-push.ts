import {
  MAX_OCCUPANCY_EXPOSE, MAX_OCCUPANCY_NODES, MAX_TOPIC_NAME_LENGTH, isCount, parseOccupancyCounts,
  type OccupancyNode, type OccupancyPush, type OccupancySnapshot,
} from "../admin/contract.js";

/** Longest intervalSeconds (the CRD's maximum). */
export const MAX_OCCUPANCY_INTERVAL_SECONDS = 300;

/**
 * Validates the `occupancy` field of a PUT /config body: null (lift it) or
 * `{expose: [glob], totals: bool, intervalSeconds: 1..300, snapshot?}`. The sidecar serves
 * whatever it holds to anyone who can reach it, so everything is checked and bounded here:
 * a string is the error, naming the field.
 */
export function parseOccupancyPush(value: unknown): OccupancyPush | null | string {
  if (value === null) return null;
  if (!isObject(value)) return "occupancy must be an object {expose, totals, intervalSeconds, snapshot?} or null";
  const { expose, totals, intervalSeconds, snapshot } = value;
  if (!Array.isArray(expose) || expose.length > MAX_OCCUPANCY_EXPOSE || !expose.every(isTopicName)) {
    return `occupancy.expose must be an array of at most ${MAX_OCCUPANCY_EXPOSE} non-empty globs of at most ${MAX_TOPIC_NAME_LENGTH} characters`;
  }
  if (typeof totals !== "boolean") return `occupancy.totals must be a boolean, got ${JSON.stringify(totals)}`;
  if (typeof intervalSeconds !== "number" || !Number.isInteger(intervalSeconds) || intervalSeconds < 1 || intervalSeconds > MAX_OCCUPANCY_INTERVAL_SECONDS) {
    return `occupancy.intervalSeconds must be an integer in 1..${MAX_OCCUPANCY_INTERVAL_SECONDS}, got ${JSON.stringify(intervalSeconds)}`;
  }
  const push: OccupancyPush = { expose: [...expose] as string[], totals, intervalSeconds };
  if (snapshot === undefined) return push;
  const parsed = parseSnapshot(snapshot);
  if (typeof parsed === "string") return `occupancy.snapshot.${parsed}`;
  push.snapshot = parsed;
  return push;
}

function parseSnapshot(value: unknown): OccupancySnapshot | string {
  if (!isObject(value)) return "snapshot must be an object {at, total?, counts, nodes}";
  const { at, total, counts, nodes } = value;
  if (typeof at !== "string" || Number.isNaN(Date.parse(at))) return `at must be an ISO 8601 time, got ${JSON.stringify(at)}`;
  const out: OccupancySnapshot = { at, counts: {}, nodes: [] };
  if (total !== undefined) {
    if (!isObject(total) || !isCount(total.connections) || !isCount(total.channels)) return "total must be {connections, channels} of counts";
    out.total = { connections: total.connections, channels: total.channels };
  }
  const c = parseOccupancyCounts(counts, "counts");
  if (typeof c === "string") return c;
  out.counts = c;
  if (!Array.isArray(nodes) || nodes.length > MAX_OCCUPANCY_NODES) return `nodes must be an array of at most ${MAX_OCCUPANCY_NODES} entries`;
  for (const [i, n] of nodes.entries()) {
    const node = parseNode(n, `nodes[${i}]`);
    if (typeof node === "string") return node;
    out.nodes.push(node);
  }
  return out;
}

function parseNode(n: unknown, where: string): OccupancyNode | string {
  const totalsOk = (n: Record<string, unknown>) => (n.connections === undefined && n.channels === undefined) || (isCount(n.connections) && isCount(n.channels));
  if (!isObject(n) || typeof n.name !== "string" || n.name.length > MAX_TOPIC_NAME_LENGTH || !totalsOk(n)) {
    return `${where} must be {name, connections?, channels?, counts}`;
  }
  const counts = parseOccupancyCounts(n.counts, `${where}.counts`);
  if (typeof counts === "string") return counts;
  return n.connections === undefined ? { name: n.name, counts } : { name: n.name, connections: n.connections as number, channels: n.channels as number, counts };
}

function isTopicName(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= MAX_TOPIC_NAME_LENGTH;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
