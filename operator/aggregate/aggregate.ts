// Pure: the metered pods' samples → the counts in a ConnectionPolicy's status. No I/O, no clock.
// Whatever the sidecars report, what comes out fits the CRD's status schema (names within its
// length limit, whole non-negative counts), so a status write is never refused for its content.
import { createHash } from "node:crypto";
import { OTHER_TOPICS, TopicGroups, type HeldConfig } from "../../sidecar/admin/contract.js";
import type { NodeStatus, PodStatus, TopicGroupSpec, TopicStatus } from "../api/types.js";

/** What a sidecar's `GET /stats` answered (the fields the operator uses). */
export interface SidecarSample {
  connections: number;
  channels: number;
  /** Live long-poll sessions; they are connections too. */
  longpoll: number;
  /** Joined channels per topic group or topic, as the sidecar reports them. */
  topics: Record<string, number>;
  /** Joined channels per exposed glob and matching topic (spec.occupancy), once the sidecar was told the globs. */
  occupancy?: Record<string, number>;
  /** The sidecar's usage counters (absent from sidecars before issue 18). */
  usage?: SidecarUsage;
  /** Upgrades and joins attempted since the sidecar started (absent from sidecars before issue 18). */
  attempts?: { upgrades: number; joins: number; joinErrors?: number; disconnects?: number; leaves?: number };
  /** What the sidecar enforces now (contract.ts `HeldConfig`; absent from older sidecars). */
  config?: HeldConfig;
}

/** A sidecar's usage counters, checked (contract.ts `Usage`). */
export interface SidecarUsage {
  since: string;
  connectionSeconds: number;
  channelSeconds: Record<string, number>;
}

/** One pod of the target as the reconciler sees it. */
export interface PodObservation {
  name: string;
  node: string | undefined;
  ready: boolean;
  /** The counts to use: this interval's, or the last known ones while stale; undefined when unknown. */
  sample: SidecarSample | undefined;
  /** The sidecar did not answer this interval's scrape. */
  stale: boolean;
}

/** Status lists stay far below etcd's object limit: these bound them. */
export const MAX_STATUS_PODS = 200;
export const MAX_STATUS_NODES = 200;
/** spec.topics allows 64 groups; with the named topics and the remainder, status.topics ≤ 65 (the CRD's maxItems). */
export const MAX_STATUS_TOPICS = 65;
/** The CRD's maxLength of status.topics[].name (and of the pods' and nodes' names). */
export const MAX_STATUS_NAME = 253;

export interface Aggregate {
  /** WebSocket connections plus long-poll sessions, over every pod with counts. */
  connections: number;
  channels: number;
  longpoll: number;
  /** Pods whose sidecar answered this interval. */
  meteredPods: number;
  /** Pods whose sidecar did not answer (their last known counts are used, or none). */
  stalePods: string[];
  /** Stale pods with no usable counts at all: the totals are a lower bound while any exist. */
  unknownPods: string[];
  /** Per pod, indexed by name: the connections used for budgets and deletion costs. */
  podConnections: Map<string, number>;
  /** Per pod and group index: joined channels (for the group budgets). */
  podGroupChannels: Map<string, Float64Array>;
  topics: TopicStatus[];
  pods: PodStatus[];
  nodes: NodeStatus[];
}

/**
 * Sums the samples into cluster, per-topic, per-pod and per-node counts.
 *
 * Topics: the policy's groups first, in spec order, each with its cap; then the busiest
 * ungrouped topics; then everything else under `_other`, so the list stays bounded. A sidecar
 * that has not yet received the groups reports raw topics; they are grouped here by the same
 * glob rules the sidecar uses.
 *
 * Pods: stale and not-ready pods first (what an operator must look at), then the busiest.
 */
export function aggregate(observations: readonly PodObservation[], groupSpecs: readonly TopicGroupSpec[]): Aggregate {
  const groupOf = memoGroupOf(new TopicGroups(groupSpecs));
  const groupChannels = new Float64Array(groupSpecs.length);
  const ungrouped = new Map<string, number>();
  const nodes = new Map<string, NodeStatus>();
  const out: Aggregate = {
    connections: 0, channels: 0, longpoll: 0, meteredPods: 0, stalePods: [], unknownPods: [],
    podConnections: new Map(), podGroupChannels: new Map(), topics: [], pods: [], nodes: [],
  };
  for (const pod of observations) {
    if (pod.stale) out.stalePods.push(pod.name);
    else out.meteredPods++;
    const s = pod.sample;
    if (!s) {
      out.unknownPods.push(pod.name);
      out.pods.push({ name: pod.name, ...(pod.node ? { node: pod.node } : {}), ready: pod.ready, stale: true });
      continue;
    }
    const longpoll = count(s.longpoll);
    const connections = count(s.connections) + longpoll;
    const channels = count(s.channels);
    out.connections += connections;
    out.channels += channels;
    out.longpoll += longpoll;
    out.podConnections.set(pod.name, connections);
    const perGroup = new Float64Array(groupSpecs.length);
    for (const [key, raw] of Object.entries(s.topics)) {
      const n = count(raw);
      const g = key === OTHER_TOPICS ? -1 : groupOf(key);
      if (g >= 0) {
        groupChannels[g]! += n;
        perGroup[g]! += n;
      } else {
        ungrouped.set(key, (ungrouped.get(key) ?? 0) + n);
      }
    }
    out.podGroupChannels.set(pod.name, perGroup);
    out.pods.push({
      name: pod.name, ...(pod.node ? { node: pod.node } : {}), connections, channels, ready: pod.ready,
      ...(pod.stale ? { stale: true } : {}),
    });
    if (pod.node) {
      const n = nodes.get(pod.node) ?? { name: pod.node, pods: 0, connections: 0, channels: 0 };
      n.pods++;
      n.connections += connections;
      n.channels += channels;
      nodes.set(pod.node, n);
    }
  }
  out.topics = topicList(groupSpecs, groupChannels, ungrouped);
  out.pods = out.pods.sort(byAttentionThenLoad).slice(0, MAX_STATUS_PODS);
  out.nodes = [...nodes.values()].sort((a, b) => b.connections - a.connections || a.name.localeCompare(b.name)).slice(0, MAX_STATUS_NODES);
  return out;
}

/**
 * Distinct topic names one aggregation remembers the group of. Every pod reports the same group
 * names and, mostly, the same busy topics: each glob runs once per name, not once per pod.
 */
const GROUP_MEMO_SIZE = 50_000;

function memoGroupOf(groups: TopicGroups): (topic: string) => number {
  const memo = new Map<string, number>();
  return (topic) => {
    let g = memo.get(topic);
    if (g === undefined) {
      g = groups.groupOf(topic);
      if (memo.size < GROUP_MEMO_SIZE) memo.set(topic, g);
    }
    return g;
  };
}

function topicList(groupSpecs: readonly TopicGroupSpec[], groupChannels: Float64Array, ungrouped: Map<string, number>): TopicStatus[] {
  const list: TopicStatus[] = groupSpecs.map((g, i) => ({
    name: g.match, channels: groupChannels[i]!, ...(g.maxChannels !== undefined ? { maxChannels: g.maxChannels } : {}),
  }));
  let rest = ungrouped.get(OTHER_TOPICS) ?? 0;
  ungrouped.delete(OTHER_TOPICS);
  const named = [...ungrouped].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const room = MAX_STATUS_TOPICS - 1 - list.length;
  for (const [i, [topic, n]] of named.entries()) {
    if (i < room) list.push({ name: statusName(topic), channels: n });
    else rest += n;
  }
  if (rest > 0) list.push({ name: OTHER_TOPICS, channels: rest });
  return list;
}

/** A count as the status may hold it: a whole number in [0, 2^53). Anything else a sidecar says counts as 0. */
function count(v: number): number {
  return Number.isFinite(v) && v > 0 ? Math.min(Math.floor(v), Number.MAX_SAFE_INTEGER) : 0;
}

/**
 * A topic name that fits status.topics[].name: itself when short enough, else its first
 * characters, "~" and 10 hex digits of its SHA-256, so one long name always maps to the same
 * entry and two long names with a common prefix stay apart. Counted in code points, as the API
 * server counts maxLength.
 */
export function statusName(name: string): string {
  const chars = [...name];
  if (chars.length <= MAX_STATUS_NAME) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 10);
  return `${chars.slice(0, MAX_STATUS_NAME - 11).join("")}~${hash}`;
}

function attention(p: PodStatus): number {
  return p.stale ? 0 : p.ready ? 2 : 1;
}

function byAttentionThenLoad(a: PodStatus, b: PodStatus): number {
  return attention(a) - attention(b) || (b.connections ?? 0) - (a.connections ?? 0) || a.name.localeCompare(b.name);
}
