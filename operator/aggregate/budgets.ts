// Pure: a cluster-wide cap split into per-pod budgets whose sum never exceeds the cap.

/** One pod's claim on a cap. */
export interface BudgetClaim {
  name: string;
  /** What the pod holds now (connections, or joined channels of one group). */
  used: number;
  /**
   * Set for a pod that cannot be told a new budget (its sidecar did not answer): it keeps
   * enforcing the budget it last got until that expires, so this much of the cap stays
   * reserved for it (at least what it held when last seen).
   */
  reserved?: number;
  /**
   * A live pod that gets no share of the headroom: its budget is what it holds (a pod being
   * deleted: its sidecar drains, and the connections it sheds must find room elsewhere).
   */
  noHeadroom?: boolean;
}

/** What the pods that cannot be told a new budget keep of the cap: each its reservation, never less than it holds. */
export function reservedTotal(claims: readonly BudgetClaim[]): number {
  return claims.reduce((sum, c) => sum + (c.reserved === undefined ? 0 : Math.max(c.reserved, c.used)), 0);
}

/**
 * Splits `cap` among the pods: each live pod gets what it holds plus an even share of the
 * headroom, never more than `perPodCap` (pods marked `noHeadroom` get only what they hold);
 * stale pods keep their reservation. When the pods
 * already hold more than the cap (the cap was lowered, or pods came back), each live pod's
 * budget is its proportional share of what is left, below what it holds: it refuses new
 * connections and keeps the ones it has. The sum of the budgets of live pods plus the
 * reservations never exceeds `cap` (property-tested).
 *
 * Returns the budget of every live pod (pods with `reserved` are left out: nothing can be
 * pushed to them).
 */
export function splitCap(cap: number, claims: readonly BudgetClaim[], perPodCap = Infinity): Map<string, number> {
  const budgets = new Map<string, number>();
  const live = claims.filter((c) => c.reserved === undefined).sort((a, b) => a.name.localeCompare(b.name));
  const pool = Math.max(0, Math.floor(cap) - reservedTotal(claims));
  const usedTotal = live.reduce((sum, c) => sum + c.used, 0);
  if (live.length === 0) return budgets;
  if (usedTotal >= pool) {
    // Over (or at) the cap: proportional shares of the pool, floored, so the sum stays ≤ pool.
    for (const c of live) budgets.set(c.name, usedTotal === 0 ? 0 : Math.min(perPodCap, Math.floor((pool * c.used) / usedTotal)));
    return budgets;
  }
  for (const c of live) budgets.set(c.name, Math.min(perPodCap, c.used));
  // Water-fill the headroom: pods that an even share would take to the per-pod cap are filled
  // first; once none would, the rest is split evenly (the remainder one each, in name order), so
  // the shares of pods below the cap differ by at most 1. Each round fills at least one pod or
  // hands out all the headroom.
  let headroom = pool - live.reduce((sum, c) => sum + budgets.get(c.name)!, 0);
  let open = live.filter((c) => !c.noHeadroom && budgets.get(c.name)! < perPodCap);
  while (headroom > 0 && open.length > 0) {
    const share = Math.floor(headroom / open.length);
    const filled = open.filter((c) => perPodCap - budgets.get(c.name)! <= share);
    if (filled.length > 0) {
      for (const c of filled) {
        headroom -= perPodCap - budgets.get(c.name)!;
        budgets.set(c.name, perPodCap);
      }
      open = open.filter((c) => budgets.get(c.name)! < perPodCap);
      continue;
    }
    let extra = headroom - share * open.length;
    for (const c of open) {
      budgets.set(c.name, budgets.get(c.name)! + share + (extra > 0 ? 1 : 0));
      extra--;
    }
    headroom = 0;
  }
  return budgets;
}
