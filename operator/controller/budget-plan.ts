// Pure: what to push to each sidecar (PUT /config) so that the cluster caps hold at every
// instant, not only once every push has landed. Two rules carry that:
//   - a pod that cannot be told a new budget (silent, or its last push failed) keeps what it
//     last accepted until the TTL runs out, so that much of the cap stays reserved for it;
//   - pushes that lower a budget go first (phase 1); pushes that raise one (phase 2) only after,
//     and a phase-2 push never raises anything when a phase-1 push failed.
import { splitCap, type BudgetClaim } from "../aggregate/budgets.js";
import type { PolicySpec } from "../api/types.js";
import type { SidecarConfig } from "../scrape/sidecar-client.js";

/** Seconds a Lease is held without renewal (leader-election.ts's default leaseDuration). */
export const LEASE_DURATION_SECONDS = 15;

/** An API server outage the budgets outlast, in seconds, on top of a failover. */
export const API_OUTAGE_TOLERANCE_SECONDS = 30;

/**
 * How long pushed values hold in a sidecar without a refresh, in seconds. The worst gap between
 * two pushes is an unclean failover while the API server is away: the leader cannot renew and
 * stops acting, and a standby, once the API server answers again, must see the Lease unchanged
 * for a whole lease duration before it takes it. So: two lease durations, the outage tolerated
 * (30 s), and two intervals (the successor's first scrape and push); never under 3 intervals.
 * 64 s at a 2 s interval, 70 s at the default 5 s. A dead operator's budgets end after that;
 * until then they keep the cluster cap, the safe side of stale.
 */
export function budgetTtlSeconds(intervalMs: number): number {
  const intervalS = intervalMs / 1000;
  return Math.ceil(Math.max(3 * intervalS, 2 * LEASE_DURATION_SECONDS + API_OUTAGE_TOLERANCE_SECONDS + 2 * intervalS));
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
  const connectionBudgets = limits.maxConnections === undefined ? undefined : splitCap(
    limits.maxConnections,
    pods.map((p) => claim(p, p.connections, p.inForce ? budgetOf(p.inForce.connectionBudget) : undefined)),
    limits.maxConnectionsPerPod ?? Infinity,
  );
  const groupBudgets = spec.topics.map((g, i) => g.maxChannels === undefined ? undefined : splitCap(
    g.maxChannels,
    // By glob, not position: a reordered spec.topics must not charge a pod another group's budget.
    pods.map((p) => claim(p, p.groupChannels?.[i], p.inForce?.topics?.find((t) => t.match === g.match)?.maxChannels)),
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
