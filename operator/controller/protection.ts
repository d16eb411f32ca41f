// Join-flood protection pushed to the sidecars (issue 18): spec.limits' join buckets and, while a
// flood is throttled, tighter upgrade and join buckets, as the fields of PUT /config; and
// condition FloodDetected. Pure.
import {
  COND_FLOOD_DETECTED, REASON_COLLECTING_BASELINE, REASON_JOIN_SPIKE, REASON_RATE_NORMAL, REASON_UPGRADE_AND_JOIN_SPIKE, REASON_UPGRADE_SPIKE,
  type FloodProtectionSpec, type PolicySpec,
} from "../api/types.js";
import type { SidecarConfig } from "../scrape/sidecar-client.js";
import type { ConditionUpdate } from "./conditions.js";
import { MIN_BASELINE_MS, describeReading, type FloodState, type Throttle } from "./flood.js";

/** The PUT /config fields that carry token buckets (absent = the sidecar's flags). */
export const BUCKET_FIELDS = ["joinRatePerSecond", "joinBurst", "podJoinRatePerSecond", "podJoinBurst", "upgradeRatePerSecond", "upgradeBurst"] as const;

type Buckets = Pick<SidecarConfig, (typeof BUCKET_FIELDS)[number]>;

/** spec.limits' join buckets as PUT /config fields; a field the spec leaves out is not sent. */
export function joinBuckets(spec: PolicySpec): Buckets {
  const l = spec.limits;
  return {
    ...(l.joinRatePerSocket !== undefined ? { joinRatePerSecond: l.joinRatePerSocket } : {}),
    ...(l.joinBurstPerSocket !== undefined ? { joinBurst: l.joinBurstPerSocket } : {}),
    ...(l.joinRatePerPod !== undefined ? { podJoinRatePerSecond: l.joinRatePerPod } : {}),
    ...(l.joinBurstPerPod !== undefined ? { podJoinBurst: l.joinBurstPerPod } : {}),
  };
}

/** Whether `next` drops a bucket field `before` set: the sidecar merges a PUT, so it must be reset to its flags first. */
export function liftsABucket(before: SidecarConfig, next: SidecarConfig): boolean {
  return BUCKET_FIELDS.some((f) => before[f] !== undefined && next[f] === undefined);
}

// --- flood detection (issue 18) ---
/**
 * The buckets pushed while a flood is throttled: each pod's share of the threshold, for
 * upgrades and joins (burst = one second's worth), never looser than spec.limits' own.
 */
export function throttleBuckets(spec: PolicySpec, t: Throttle): Buckets {
  const joinRate = Math.min(t.joinRatePerSecond, spec.limits.joinRatePerPod ?? Infinity);
  return { upgradeRatePerSecond: t.upgradeRatePerSecond, upgradeBurst: t.upgradeRatePerSecond, podJoinRatePerSecond: joinRate, podJoinBurst: joinRate };
}

/**
 * Condition FloodDetected from the detector's state. Its message changes only when the verdict
 * does (a flood's numbers are those of its onset), so it never forces a status write per scrape;
 * the live rates are in the operator's log and the sidecars' metrics.
 */
export function floodCondition(state: FloodState, spec: FloodProtectionSpec): ConditionUpdate {
  const c = (status: "True" | "False" | "Unknown", reason: string, message: string): ConditionUpdate => ({ type: COND_FLOOD_DETECTED, status, reason, message });
  if (state.phase === "collecting") {
    return c("Unknown", REASON_COLLECTING_BASELINE, `Collecting the baseline: spikes are judged once ${MIN_BASELINE_MS / 1000} s of upgrade and join rates are known`);
  }
  if (state.phase === "normal") {
    return c("False", REASON_RATE_NORMAL, `Upgrade and join rates over the last minute are under max(${spec.minRatePerSecond}/s, ${spec.spikeFactor} × the previous hour's)`);
  }
  const numbers = describeReading(state.onset, spec);
  const reason = state.signals.length === 2 ? REASON_UPGRADE_AND_JOIN_SPIKE : state.signals[0] === "upgrades" ? REASON_UPGRADE_SPIKE : REASON_JOIN_SPIKE;
  const action = state.throttle
    ? `Throttling every pod to ${state.throttle.upgradeRatePerSecond} upgrades/s and ${state.throttle.joinRatePerSecond} joins/s until the rates stay under the thresholds for ${spec.cooldownSeconds} s`
    : `spec.floodProtection.action is none: reported only`;
  const quiet = state.quietSinceMs === undefined ? "" : ` (under the thresholds since ${new Date(state.quietSinceMs).toISOString()})`;
  return c("True", reason, `Flood since ${new Date(state.sinceMs).toISOString()}: ${numbers}. ${action}${quiet}`);
}
// --- end flood detection ---
