import { randomBytes } from "node:crypto";
import type { TopicGroupSpec } from "../ledger/topic-groups.js";
import type { Limits } from "../limits/admission.js";

/** Where the limits and topic groups in force come from. */
export type ConfigSource = "flags" | "pushed";

/** The part of GET /config that says where the values come from and until when. */
export interface ConfigProvenance {
  source: ConfigSource;
  /** ISO 8601 time at which pushed values fall back to the flags; null = they hold until replaced. */
  expiresAt: string | null;
  /** The TTL of the last PUT; null when it carried none (or the flags are in force). */
  ttlSeconds: number | null;
  /**
   * Changes with every change of source or values (a PUT, a DELETE, an expiry) and with every
   * start of the process: the operator remembers the revision its PUT produced and, while
   * `/stats` reports the same one, knows the sidecar still holds exactly what it pushed.
   */
  revision: string;
}

/** Limits plus topic groups: what a PUT /config replaces and what the flags set first. */
export interface LimitsAndTopics {
  limits: Limits;
  topics: TopicGroupSpec[];
}

/** What PushedConfig drives: the sidecar applies, it decides when. */
export interface ConfigTarget {
  configure(limits: Limits, topics: TopicGroupSpec[] | undefined): void;
}

/**
 * Values pushed by the operator with PUT /config, and their lease: a PUT with `ttlSeconds`
 * holds only until that many seconds pass without another PUT, then the sidecar's own flag
 * values come back, so a dead operator never leaves stale budgets behind. Every PUT sets the
 * lease anew from its own `ttlSeconds`; a PUT without one holds until replaced (the behaviour
 * before TTLs existed). Logs only when the source changes, not on every refresh.
 */
export class PushedConfig {
  private source: ConfigSource = "flags";
  private expiresAtMs: number | null = null;
  private ttlSeconds: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The ConnectionPolicy whose values are in force (the push names it); null on the flags. */
  private policy: string | null = null;
  /** Random per process, so a restarted sidecar never repeats a revision of its predecessor. */
  private readonly boot = randomBytes(6).toString("base64url");
  private changes = 0;

  constructor(
    private readonly target: ConfigTarget,
    private readonly flags: LimitsAndTopics,
    private readonly log: (message: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get isPushed(): boolean {
    this.expireIfDue();
    return this.source === "pushed";
  }

  /** The name of the ConnectionPolicy whose pushed values are in force, if the push named one. */
  get policyName(): string | null {
    return this.isPushed ? this.policy : null;
  }

  /** Applies a validated PUT: the values now, and the lease for them. */
  push(limits: Limits, topics: TopicGroupSpec[] | undefined, ttlSeconds: number | undefined, policy?: string): void {
    this.clearTimer();
    this.target.configure(limits, topics);
    this.changes++;
    this.policy = policy ?? null;
    const wasPushed = this.source === "pushed";
    this.source = "pushed";
    this.ttlSeconds = ttlSeconds ?? null;
    this.expiresAtMs = ttlSeconds === undefined ? null : this.now() + ttlSeconds * 1000;
    if (ttlSeconds !== undefined) {
      this.timer = setTimeout(this.expire, ttlSeconds * 1000);
      this.timer.unref();
    }
    if (!wasPushed) {
      const lease = ttlSeconds === undefined ? "until replaced" : `for ${ttlSeconds}s unless refreshed`;
      this.log(`config: pushed values in force ${lease} (${describe(limits)})`);
    }
  }

  /** DELETE /config: the flags' values at once (the operator lifts a deleted policy's budgets). */
  reset(): void {
    if (this.source !== "pushed") return;
    this.backToFlags("lifted by DELETE /config");
  }

  provenance(): ConfigProvenance {
    this.expireIfDue();
    return {
      source: this.source,
      expiresAt: this.expiresAtMs === null ? null : new Date(this.expiresAtMs).toISOString(),
      ttlSeconds: this.ttlSeconds,
      revision: `${this.boot}.${this.changes}`,
    };
  }

  close(): void {
    this.clearTimer();
  }

  /** A timer can fire late on a busy loop; readers check the deadline themselves too. */
  private expireIfDue(): void {
    if (this.expiresAtMs !== null && this.now() >= this.expiresAtMs) this.expire();
  }

  private readonly expire = (): void => {
    if (this.source !== "pushed") return;
    this.backToFlags(`expired (no PUT /config within ${this.ttlSeconds}s)`);
  };

  /** The flags' values in force again (a DELETE or an expiry), a new revision, one log line saying `why`. */
  private backToFlags(why: string): void {
    this.clearTimer();
    this.source = "flags";
    this.changes++;
    this.expiresAtMs = null;
    this.ttlSeconds = null;
    this.target.configure(this.flags.limits, this.flags.topics);
    this.log(`config: pushed values ${why}; back to flag values (${describe(this.flags.limits)})`);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

function describe(limits: Limits): string {
  return Object.entries(limits)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(" ");
}
