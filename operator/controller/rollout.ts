// Rollout guard (issue 18): while pods of two revisions of the target run side by side, compare
// the churn of the new revision's pods with the old ones': disconnects and channel leaves per
// connection-minute, and join errors per join, each with a minimum sample. Pure apart from
// what it remembers; the reconciler feeds it each scrape's counters and the clock.
import {
  COND_ROLLOUT_CHURN, REASON_CHURN_ABOVE_OLD, REASON_CHURN_WITHIN_RATIO, REASON_COLLECTING_SAMPLE, REASON_NO_ROLLOUT,
  type RolloutGuardSpec, type RolloutRevisionStatus, type RolloutStatus,
} from "../api/types.js";
import type { ConditionUpdate } from "./conditions.js";

/** A rate must also exceed this floor to count as raised (0 churn on the old pods is common). */
export const CHURN_FLOOR_PER_CONNECTION_MINUTE = 0.01;
export const JOIN_ERROR_FLOOR = 0.01;

/** One pod's counters at a scrape (its sidecar's; `since` tells a restart). */
export interface ChurnSample {
  pod: string;
  revision: string;
  since: string;
  connectionSeconds: number;
  disconnects: number;
  leaves: number;
  joins: number;
  joinErrors: number;
}

type Counts = Omit<ChurnSample, "pod" | "revision" | "since">;
const ZERO: Counts = { connectionSeconds: 0, disconnects: 0, leaves: 0, joins: 0, joinErrors: 0 };
const FIELDS = Object.keys(ZERO) as (keyof Counts)[];

export interface RolloutVerdict {
  status: RolloutStatus;
  /** True: the new revision churns over maxChurnRatio × the old; undefined: too small a sample. */
  exceeded: boolean | undefined;
  /** Which signal exceeded, with the numbers. */
  why: string;
}

export class RolloutGuard {
  private readonly pods = new Map<string, ChurnSample>();
  /** When each revision was first seen; revisions present at the first observation are "old" (unknown order). */
  private readonly firstSeen = new Map<string, number>();
  private readonly totals = new Map<string, Counts>();
  private started = false;
  private sinceMs: number | undefined;

  /** One scrape. Undefined when only one revision runs (no rollout). */
  observe(samples: readonly ChurnSample[], spec: RolloutGuardSpec, nowMs: number): RolloutVerdict | undefined {
    const revisions = new Set(samples.map((s) => s.revision));
    for (const r of revisions) if (!this.firstSeen.has(r)) this.firstSeen.set(r, this.started ? nowMs : -Infinity);
    for (const r of this.firstSeen.keys()) if (!revisions.has(r)) this.firstSeen.delete(r);
    this.started = true;
    if (revisions.size < 2) {
      this.totals.clear();
      this.sinceMs = undefined;
      for (const s of samples) this.pods.set(s.pod, s);
      return undefined;
    }
    this.sinceMs ??= nowMs;
    for (const s of samples) {
      const last = this.pods.get(s.pod);
      const t = this.totals.get(s.revision) ?? { ...ZERO };
      for (const f of FIELDS) t[f] += last === undefined || last.since !== s.since ? (last === undefined ? 0 : s[f]) : Math.max(0, s[f] - last[f]);
      this.totals.set(s.revision, t);
      this.pods.set(s.pod, s);
    }
    const newest = [...this.firstSeen.entries()].sort((a, b) => b[1] - a[1]);
    if (newest[0]![1] === -Infinity) return undefined; // both were there when this operator started: which is new is unknown
    const newRev = newest[0]![0];
    const oldRevs = newest.slice(1).map(([r]) => r).sort();
    const sum = (revs: string[]) => revs.reduce((acc, r) => add(acc, this.totals.get(r) ?? ZERO), { ...ZERO });
    const podsOf = (revs: string[]) => samples.filter((s) => revs.includes(s.revision)).length;
    const n = revisionStatus([newRev], podsOf([newRev]), sum([newRev]));
    const o = revisionStatus(oldRevs, podsOf(oldRevs), sum(oldRevs));
    const status: RolloutStatus = { since: new Date(this.sinceMs).toISOString(), new: n, old: o };
    return { status, ...judge(n, o, spec) };
  }
}

function add(a: Counts, b: Counts): Counts {
  const out = { ...a };
  for (const f of FIELDS) out[f] += b[f];
  return out;
}

function revisionStatus(revisions: string[], pods: number, c: Counts): RolloutRevisionStatus {
  const minutes = c.connectionSeconds / 60;
  return {
    revisions, pods, connectionMinutes: Math.round(minutes), disconnects: c.disconnects, leaves: c.leaves, joins: c.joins, joinErrors: c.joinErrors,
    churnPerConnectionMinute: round4(minutes > 0 ? (c.disconnects + c.leaves) / minutes : 0),
    joinErrorRatio: round4(c.joins > 0 ? c.joinErrors / c.joins : 0),
  };
}

function round4(x: number): string {
  return x.toFixed(4);
}

/** Each signal is judged once both sides have the minimum sample; either one over the ratio is enough. */
function judge(n: RolloutRevisionStatus, o: RolloutRevisionStatus, spec: RolloutGuardSpec): { exceeded: boolean | undefined; why: string } {
  const churnSample = n.connectionMinutes >= spec.minConnectionMinutes && o.connectionMinutes >= spec.minConnectionMinutes;
  const joinSample = n.joins >= spec.minJoins && o.joins >= spec.minJoins;
  const over = (a: number, b: number, floor: number) => a > floor && a > spec.maxChurnRatio * b;
  const reasons: string[] = [];
  if (churnSample && over(Number(n.churnPerConnectionMinute), Number(o.churnPerConnectionMinute), CHURN_FLOOR_PER_CONNECTION_MINUTE)) {
    reasons.push(`new pods lose ${n.churnPerConnectionMinute} connections and channels per connection-minute, over ${spec.maxChurnRatio} × the old pods' ${o.churnPerConnectionMinute}`);
  }
  if (joinSample && over(Number(n.joinErrorRatio), Number(o.joinErrorRatio), JOIN_ERROR_FLOOR)) {
    reasons.push(`new pods refuse ${n.joinErrorRatio} of joins, over ${spec.maxChurnRatio} × the old pods' ${o.joinErrorRatio}`);
  }
  if (reasons.length > 0) return { exceeded: true, why: reasons.join("; ") };
  if (!churnSample && !joinSample) {
    return { exceeded: undefined, why: `waiting for ${spec.minConnectionMinutes} connection-minutes or ${spec.minJoins} joins on both the new and the old pods` };
  }
  return { exceeded: false, why: `new pods churn within ${spec.maxChurnRatio} × the old pods'` };
}

/**
 * The new pods' rate over the old pods' (floored, so 0 churn on the old pods gives a number),
 * per signal that has the minimum sample on both sides: the operator's gauge
 * connmeter_operator_rollout_churn_ratio. Over spec.maxChurnRatio means RolloutChurn True
 * (near the floor the gauge is a little stricter: new over ratio × floor).
 */
export function churnRatios(status: RolloutStatus, spec: RolloutGuardSpec): { churn?: number; joinErrors?: number } {
  const { new: n, old: o } = status;
  const out: { churn?: number; joinErrors?: number } = {};
  if (n.connectionMinutes >= spec.minConnectionMinutes && o.connectionMinutes >= spec.minConnectionMinutes) {
    out.churn = Number(n.churnPerConnectionMinute) / Math.max(Number(o.churnPerConnectionMinute), CHURN_FLOOR_PER_CONNECTION_MINUTE);
  }
  if (n.joins >= spec.minJoins && o.joins >= spec.minJoins) out.joinErrors = Number(n.joinErrorRatio) / Math.max(Number(o.joinErrorRatio), JOIN_ERROR_FLOOR);
  return out;
}

/**
 * Condition RolloutChurn. Its message changes only with the verdict (the numbers are those of
 * the scrape that turned it True), so it never forces a status write per scrape; status.rollout
 * has the live numbers.
 */
export function rolloutCondition(verdict: RolloutVerdict | undefined, spec: RolloutGuardSpec, whyWhenTrue: string | undefined): ConditionUpdate {
  const c = (status: "True" | "False" | "Unknown", reason: string, message: string): ConditionUpdate => ({ type: COND_ROLLOUT_CHURN, status, reason, message });
  if (verdict === undefined) return c("False", REASON_NO_ROLLOUT, "One revision of the target runs (or which one is new is not known: both ran when this operator started)");
  if (verdict.exceeded === undefined) return c("Unknown", REASON_COLLECTING_SAMPLE, `Rollout in progress, ${verdict.why}`);
  if (!verdict.exceeded) return c("False", REASON_CHURN_WITHIN_RATIO, `Rollout in progress: ${verdict.why}`);
  return c("True", REASON_CHURN_ABOVE_OLD, whyWhenTrue ?? verdict.why);
}
