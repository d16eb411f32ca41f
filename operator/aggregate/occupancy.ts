// Pure: the exposed part of the cluster aggregate that the operator pushes to every sidecar
// for the virtual topic connmeter:occupancy and GET /occupancy (issue 17). Only what
// spec.occupancy exposes leaves the operator: the exposed globs, the topics they match (as
// the sidecars reported them), the totals when asked for, and per node the same.
import {
  MAX_OCCUPANCY_KEYS, MAX_OCCUPANCY_NODES, type OccupancyNode, type OccupancyPush, type OccupancySnapshot,
} from "../../sidecar/admin/contract.js";
import type { OccupancyPolicy } from "../api/types.js";
import type { Aggregate, PodObservation } from "./aggregate.js";

/**
 * Sums the pods' `/stats` occupancy counts (this interval's, or the last known ones of a stale
 * pod, as the aggregate does) into cluster counts: every exposed glob, then the busiest topics
 * up to {@link MAX_OCCUPANCY_KEYS}. `at` is the time of the scrape the counts come from.
 */
export function occupancySnapshot(policy: OccupancyPolicy, observations: readonly PodObservation[], agg: Aggregate, at: Date): OccupancySnapshot {
  const globs = new Set(policy.expose);
  const cluster = new Map<string, number>(policy.expose.map((g) => [g, 0]));
  const nodes = new Map<string, OccupancyNode>();
  for (const pod of observations) {
    const s = pod.sample;
    if (s === undefined) continue;
    const node = pod.node === undefined ? undefined : nodeEntry(nodes, pod.node, policy);
    if (node !== undefined && policy.totals) {
      node.connections! += s.connections + s.longpoll;
      node.channels! += s.channels;
    }
    for (const [key, n] of Object.entries(s.occupancy ?? {})) {
      cluster.set(key, (cluster.get(key) ?? 0) + n);
      if (node !== undefined && globs.has(key)) node.counts[key] = (node.counts[key] ?? 0) + n;
    }
  }
  const counts: Record<string, number> = {};
  for (const g of policy.expose) counts[g] = cluster.get(g)!;
  const topics = [...cluster].filter(([k]) => !globs.has(k)).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [k, n] of topics.slice(0, MAX_OCCUPANCY_KEYS - policy.expose.length)) counts[k] = n;
  const nodeList = [...nodes.values()].sort((a, b) => (b.connections ?? 0) - (a.connections ?? 0) || a.name.localeCompare(b.name)).slice(0, MAX_OCCUPANCY_NODES);
  return {
    at: at.toISOString(),
    ...(policy.totals ? { total: { connections: agg.connections, channels: agg.channels } } : {}),
    counts,
    nodes: nodeList,
  };
}

/** The `occupancy` field of a PUT /config: the policy, and the counts once any pod reported them. */
export function occupancyPush(policy: OccupancyPolicy, snapshot: OccupancySnapshot | undefined): OccupancyPush {
  return { expose: [...policy.expose], totals: policy.totals, intervalSeconds: policy.intervalSeconds, ...(snapshot ? { snapshot } : {}) };
}

function nodeEntry(nodes: Map<string, OccupancyNode>, name: string, policy: OccupancyPolicy): OccupancyNode {
  let n = nodes.get(name);
  if (n === undefined) {
    n = policy.totals ? { name, connections: 0, channels: 0, counts: {} } : { name, counts: {} };
    nodes.set(name, n);
  }
  return n;
}
