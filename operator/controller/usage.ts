// status.usage: connection-seconds, channel-seconds per topic group and peak connections since
// the start of the UTC day, for a person reading `kubectl get connpol -o yaml`. Pure apart from
// what it remembers; the reconciler feeds it each scrape's samples and the clock.
//
// The sidecars' counters restart at 0 with the sidecar, so the meter never adds raw counters:
// it sums each pod's increase between two scrapes, and tells a restart by the counters' `since`
// (or a counter that went down), after which the whole new value is the increase. What it
// summed for the day lives in the status itself, so a new operator (restart, failover) reads it
// back and goes on from there.
import { OTHER_TOPICS } from "../../sidecar/admin/contract.js";
import type { SidecarUsage } from "../aggregate/aggregate.js";
import type { UsageStatus } from "../api/types.js";

/** One pod's sample as the meter needs it. */
export interface UsageSample {
  pod: string;
  usage: SidecarUsage;
}

interface PodCounters {
  since: string;
  connectionSeconds: number;
  channelSeconds: Record<string, number>;
}

/** The UTC day of `ms`, as `YYYY-MM-DD`. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export class UsageMeter {
  private readonly pods = new Map<string, PodCounters>();
  private period: string;
  private connectionSeconds: number;
  private readonly groupSeconds = new Map<string, number>();
  private peakConnections: number;
  private peakTime: string | undefined;

  /**
   * @param restored the status.usage last written (by this operator or an earlier one); used
   *   when it is of today's UTC day.
   * @param startedMs when this meter began: a sidecar whose counters started after it is new
   *   and all of its counters count; one already running when the meter began is a baseline.
   */
  constructor(restored: UsageStatus | undefined, private readonly startedMs: number) {
    this.period = utcDay(startedMs);
    const same = restored?.period === this.period;
    this.connectionSeconds = same ? restored.connectionSeconds : 0;
    this.peakConnections = same ? restored.peakConnections : 0;
    this.peakTime = same ? restored.peakTime : undefined;
    if (same) for (const g of restored.groups ?? []) this.groupSeconds.set(g.name, g.channelSeconds);
  }

  /**
   * One scrape: adds every answering pod's increase since the last scrape, and the cluster's
   * connections to the peak. `groups` are the policy's group names (status stays bounded:
   * any other name the sidecar reports counts under {@link OTHER_TOPICS}).
   */
  observe(samples: readonly UsageSample[], connections: number, groups: readonly string[], nowMs: number): UsageStatus {
    const day = utcDay(nowMs);
    if (day !== this.period) {
      // A new day: increases from here on belong to it (the interval across midnight does too).
      this.period = day;
      this.connectionSeconds = 0;
      this.groupSeconds.clear();
      this.peakConnections = 0;
      this.peakTime = undefined;
    }
    const known = new Set(groups);
    for (const { pod, usage } of samples) {
      const before = this.baseline(pod, usage);
      this.connectionSeconds += increase(before?.connectionSeconds, usage.connectionSeconds);
      for (const [name, seconds] of Object.entries(usage.channelSeconds)) {
        const key = known.has(name) ? name : OTHER_TOPICS;
        this.groupSeconds.set(key, (this.groupSeconds.get(key) ?? 0) + increase(before?.channelSeconds[name], seconds));
      }
      this.pods.set(pod, { since: usage.since, connectionSeconds: usage.connectionSeconds, channelSeconds: { ...usage.channelSeconds } });
    }
    if (connections > this.peakConnections || this.peakTime === undefined) {
      this.peakConnections = connections;
      this.peakTime = new Date(nowMs).toISOString();
    }
    return this.status(groups);
  }

  /** Forgets pods no longer scraped (their last increase was counted already). */
  retain(pods: ReadonlySet<string>): void {
    for (const name of this.pods.keys()) if (!pods.has(name)) this.pods.delete(name);
  }

  /**
   * The counters to subtract for `pod`: its last sample from the same sidecar process; zeros
   * (count everything) for a sidecar that started after the meter did; else the sample itself
   * (a sidecar already running when this operator began: only what follows counts).
   */
  private baseline(pod: string, usage: SidecarUsage): PodCounters | undefined {
    const last = this.pods.get(pod);
    if (last !== undefined && last.since === usage.since) return last;
    if (last !== undefined || Date.parse(usage.since) >= this.startedMs) return undefined;
    return { since: usage.since, connectionSeconds: usage.connectionSeconds, channelSeconds: usage.channelSeconds };
  }

  private status(groups: readonly string[]): UsageStatus {
    const order = [...groups, OTHER_TOPICS];
    return {
      period: this.period,
      connectionSeconds: Math.round(this.connectionSeconds),
      peakConnections: this.peakConnections,
      ...(this.peakTime ? { peakTime: this.peakTime } : {}),
      groups: order.filter((g) => this.groupSeconds.has(g)).map((name) => ({ name, channelSeconds: Math.round(this.groupSeconds.get(name)!) })),
    };
  }
}

/** A counter's increase from `before` (undefined: from 0); a counter that went down restarted, so all of it is new. */
function increase(before: number | undefined, now: number): number {
  if (before === undefined || now < before) return now;
  return now - before;
}
