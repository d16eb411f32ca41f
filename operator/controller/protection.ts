// Join-flood protection pushed to the sidecars (issue 18): spec.limits' join buckets, as the
// fields of PUT /config. Pure.
import type { PolicySpec } from "../api/types.js";
import type { SidecarConfig } from "../scrape/sidecar-client.js";

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
