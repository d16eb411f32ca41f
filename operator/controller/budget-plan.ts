// Pure: what to push to each sidecar (PUT /config) so that the cluster caps hold at every
// instant, not only once every push has landed. Two rules carry that:
//   - a pod that cannot be told a new budget (silent, or its last push failed) keeps what it
//     last accepted until the TTL runs out, so that much of the cap stays reserved for it;
//   - pushes that lower a budget go first (phase 1); pushes that raise one (phase 2) only after,
//     and a phase-2 push never raises anything when a phase-1 push failed.
import { reservedTotal, splitCap, type BudgetClaim } from "../aggregate/budgets.js";
import type { PolicySpec } from "../api/types.js";
import type { SidecarConfig } from "../scrape/sidecar-client.js";

/** Seconds a Lease is held without renewal (leader-election.ts's default leaseDuration). */
export const LEASE_DURATION_SECONDS = 15;

/** An API server outage the budgets outlast, in seconds, on top of a failover. */
export const API_OUTAGE_TOLERANCE_SECONDS = 30;

/**
 * The longest gap between two pushes that budgets must outlast, in seconds: an unclean
 * failover while the API server is away. The leader cannot renew and stops acting, and a
 * standby, once the API server answers again, must see the Lease unchanged for a whole lease
 * duration before it takes it. So: two lease durations, the outage tolerated (30 s), and two
 * intervals (the successor's first scrape and push); never under 3 intervals. 64 s at a 2 s
 * interval, 70 s at the default 5 s.
 */
export function failoverGapSeconds(intervalMs: number): number {
  const intervalS = intervalMs / 1000;
  return Math.ceil(Math.max(3 * intervalS, 2 * LEASE_DURATION_SECONDS + API_OUTAGE_TOLERANCE_SECONDS + 2 * intervalS));
}

/**
 * How long pushed values hold in a sidecar without a refresh, in seconds: two failover gaps
 * (140 s at the default 5 s interval), so that a config the sidecar already holds need not be
 * pushed again every interval. The leader refreshes it once {@link refreshAfterMs} has passed,
 * which leaves at least one failover gap of it whenever the leader dies. A dead operator's
 * budgets end after the TTL; until then they keep the cluster cap, the safe side of stale.
 */
export function budgetTtlSeconds(intervalMs: number): number {
  return 2 * failoverGapSeconds(intervalMs);
}

/**
 * Age, in ms, at which an unchanged config is pushed again: late enough to spare most
 * intervals' pushes, early enough that, with the interval it may take to notice, a failover
 * gap of the TTL is always left (TTL − gap − interval).
 */
export function refreshAfterMs(intervalMs: number): number {
  return (budgetTtlSeconds(intervalMs) - failoverGapSeconds(intervalMs)) * 1000 - intervalMs;
}

/**
 * The age at which pod `name`'s unchanged config is refreshed: between half and all of
 * {@link refreshAfterMs}, fixed per pod by a hash of its name. Pods pushed together (a new
 * leader's first interval, a rollout) then come due over several intervals, not all in one.
 */
export function refreshDueMs(name: string, intervalMs: number): number {
  let h = 0x811c9dc5; // FNV-1a, 32 bits, then murmur3's finalizer (names differ in their last characters)
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return Math.floor(refreshAfterMs(intervalMs) * (0.5 + 0.5 * ((h >>> 0) / 2 ** 32)));
}

/** One pod of the target as the budget split sees it. */
export interface BudgetPod {
  name: string;
  /** Its sidecar answered this interval's scrape. */
  fresh: boolean;
  /** The pod is being deleted: its sidecar drains; it keeps what it holds and gets no headroom. */
  terminating: boolean;
  /** The last PUT /config to it failed (401, timeout, …). */
  pushFailed: boolean;
  /** Connections it holds, when known. */
  connections: number | undefined;
  /** Joined channels per spec.topics group (by index), when known. */
  groupChannels: ArrayLike<number> | undefined;
  /** The pushed config it still enforces (TTL not run out), if any. */
  inForce: SidecarConfig | undefined;
  /** Whether it ever accepted a push (a pod that never did may still await its first budget). */
  everPushed: boolean;
}

export interface PlannedPush {
  name: string;
  config: SidecarConfig;
  /** 1: lowers a budget the sidecar enforces now (pushed first); 2: everything else. */
  phase: 1 | 2;
  /**
   * The pod's last push failed: the split already reserved what it enforces, and this push
   * only offers what it holds. Its failing again changes nothing for the other pods.
   */
  probe: boolean;
}

/**
 * The configs to push this interval. Pods that did not answer get none (they are reserved);
 * pods whose last push failed are reserved too, and are sent a budget of what they hold (never
 * more than their reservation, so safe whatever happens) to find out whether they accept pushes
 * again.
 */
export function planBudgets(spec: PolicySpec, pods: readonly BudgetPod[], ttlSeconds: number): PlannedPush[] {
  const { limits } = spec;
  const connectionBudgets = limits.maxConnections === undefined ? undefined : split(
    limits.maxConnections,
    pods.map((p) => claim(p, p.connections, p.inForce ? budgetOf(p.inForce.connectionBudget) : undefined)),
    pods.map((p) => p.inForce?.connectionBudget),
    limits.maxConnectionsPerPod ?? Infinity,
  );
  const groupBudgets = spec.topics.map((g, i) => g.maxChannels === undefined ? undefined : split(
    g.maxChannels,
    // By glob, not position: a reordered spec.topics must not charge a pod another group's budget.
    pods.map((p) => claim(p, p.groupChannels?.[i], p.inForce?.topics?.find((t) => t.match === g.match)?.maxChannels)),
    pods.map((p) => p.inForce?.topics?.find((t) => t.match === g.match)?.maxChannels),
  ));
  const out: PlannedPush[] = [];
  for (const p of pods) {
    if (!p.fresh) continue;
    const probe = p.pushFailed;
    const connectionBudget = connectionBudgets === undefined ? null
      : probe ? held(p.connections) : connectionBudgets.get(p.name) ?? held(p.connections);
    const config: SidecarConfig = {
      ...(limits.maxConnectionsPerPod !== undefined ? { maxConnections: limits.maxConnectionsPerPod } : {}),
      ...(limits.rejectAtPercent !== undefined ? { rejectAtPercent: limits.rejectAtPercent } : {}),
      connectionBudget,
      // No groups in the spec: the sidecar keeps its own (--topic-group), not an empty list.
      ...(spec.topics.length === 0 ? {} : {
        topics: spec.topics.map((g, i) => {
          const budgets = groupBudgets[i];
          if (budgets === undefined) return { match: g.match };
          const budget = probe ? held(p.groupChannels?.[i]) : budgets.get(p.name) ?? held(p.groupChannels?.[i]);
          return { match: g.match, maxChannels: budget };
        }),
      }),
      ttlSeconds,
    };
    out.push({ name: p.name, config, phase: lowers(p, config) ? 1 : 2, probe });
  }
  return out;
}

/**
 * A phase-2 push after some phase-1 push failed: a pod that failed keeps more than the split
 * assumed, so nothing may rise this interval. Budgets are capped at what each pod enforces now;
 * a pod that never got a budget gets none yet (undefined: skip it; the next interval splits the
 * cap with the failed pods reserved).
 */
export function withoutRaises(push: PlannedPush, inForce: SidecarConfig | undefined): SidecarConfig | undefined {
  if (!inForce) return undefined;
  const c = push.config;
  const connectionBudget = c.connectionBudget === null || c.connectionBudget === undefined
    ? c.connectionBudget
    : Math.min(c.connectionBudget, budgetOf(inForce.connectionBudget));
  const topics = c.topics?.map((t) => {
    if (t.maxChannels === undefined) return t;
    const now = inForce.topics?.find((x) => x.match === t.match)?.maxChannels;
    return now === undefined ? t : { match: t.match, maxChannels: Math.min(t.maxChannels, now) };
  });
  return { ...c, connectionBudget, ...(topics ? { topics } : {}) };
}

/**
 * The split, with budgets that still serve kept as they are: a pod whose budget in force is
 * at least what it holds and at least {@link KEEP_HEADROOM} of the headroom the fresh split
 * would give it keeps it, as long as the kept budgets, the fresh ones of the other pods and the
 * reservations still sum within the cap (otherwise the kept budgets furthest above their fresh
 * share are replaced first). Counts move every interval, and so would every fresh share: kept
 * budgets mean a pod is pushed only when its budget must change, not at every wobble.
 */
function split(cap: number, claims: readonly BudgetClaim[], held: readonly (number | null | undefined)[], perPodCap = Infinity): Map<string, number> {
  const fresh = splitCap(cap, claims, perPodCap);
  const out = new Map(fresh);
  const kept: { name: string; over: number }[] = [];
  claims.forEach((c, i) => {
    const f = fresh.get(c.name);
    const b = held[i];
    if (f === undefined || c.noHeadroom || typeof b !== "number" || b > perPodCap || b < c.used) return;
    if (b < f - Math.floor(KEEP_HEADROOM_SLACK * Math.max(0, f - c.used))) return;
    out.set(c.name, b);
    kept.push({ name: c.name, over: b - f });
  });
  let total = reservedTotal(claims);
  for (const b of out.values()) total += b;
  // Over the cap: give back the kept budgets that exceed their fresh share most (each step
  // lowers the total by `over` > 0; with none kept the total is the fresh split's, within it).
  kept.sort((a, b) => b.over - a.over || a.name.localeCompare(b.name));
  for (const k of kept) {
    if (total <= Math.floor(cap) || k.over <= 0) break;
    out.set(k.name, fresh.get(k.name)!);
    total -= k.over;
  }
  return out;
}

/**
 * A budget in force is kept while it leaves its pod at least this share of the headroom the
 * fresh split would (1 − 1/4): a pod filling up gets more before it runs short, and a small
 * drift of the counts moves nothing.
 */
const KEEP_HEADROOM = 0.75;
const KEEP_HEADROOM_SLACK = 1 - KEEP_HEADROOM;

function claim(p: BudgetPod, used: number | undefined, inForce: number | undefined): BudgetClaim {
  const holds = used ?? 0;
  if (!p.fresh || p.pushFailed) {
    // It enforces what it last accepted (or, past the TTL, its flags: then what it holds is all
    // that can be counted). Never less than it holds.
    const reserved = inForce === undefined || !Number.isFinite(inForce) ? holds : Math.max(holds, inForce);
    return { name: p.name, used: holds, reserved };
  }
  return p.terminating ? { name: p.name, used: holds, noHeadroom: true } : { name: p.name, used: holds };
}

/** A pushed budget as a number: none (null or absent) is no limit. */
function budgetOf(b: number | null | undefined): number {
  return b === null || b === undefined ? Infinity : b;
}

function held(n: number | undefined): number {
  return Math.max(0, Math.floor(n ?? 0));
}

/** Whether `next` lowers any budget the pod enforces now; a pod whose push lapsed (back on its unlimited flags) is lowered by any budget. */
function lowers(p: BudgetPod, next: SidecarConfig): boolean {
  if (!p.inForce) return p.everPushed;
  if (typeof next.connectionBudget === "number" && next.connectionBudget < budgetOf(p.inForce.connectionBudget)) return true;
  return (next.topics ?? []).some((t) => t.maxChannels !== undefined
    && t.maxChannels < budgetOf(p.inForce!.topics?.find((x) => x.match === t.match)?.maxChannels));
}
