import type { JoinLimits } from "./join-throttle.js";

/** Per-pod limits: the operator pushes new values with PUT /config, flags set the first ones. */
export interface Limits extends JoinLimits {
  /** Open WebSocket connections this pod admits; 0 = no cap. */
  maxConnections: number;
  /**
   * This pod's share of a cluster-wide cap, pushed by the operator (PUT /config); null = none.
   * Unlike maxConnections, 0 means what it says: admit no new connection.
   */
  connectionBudget: number | null;
  /** /readyz turns 503 at this percentage of maxConnections, so the Service sends new sockets elsewhere. */
  rejectAtPercent: number;
  /** Sustained upgrades per second admitted (token bucket refill); 0 = no rate limit. */
  upgradeRatePerSecond: number;
  /** Upgrades admitted in one burst above the rate. */
  upgradeBurst: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxConnections: 0,
  connectionBudget: null,
  rejectAtPercent: 90,
  upgradeRatePerSecond: 0,
  upgradeBurst: 100,
  joinRatePerSecond: 0,
  joinBurst: 20,
  podJoinRatePerSecond: 0,
  podJoinBurst: 200,
};

/**
 * Readiness comes back only this many percentage points below rejectAtPercent, so a pod
 * hovering at the threshold does not flap in and out of the Service's endpoints.
 */
export const READY_HYSTERESIS_PERCENT = 5;

/** Why an upgrade was refused; also the `reason` label of the rejected-connections counter. */
export const REFUSE_CAPACITY = "capacity";
export const REFUSE_RATE = "rate";
export const REFUSE_DRAINING = "draining";
export const REFUSE_UPSTREAM = "upstream_unavailable";
/** No budget from the operator yet (--await-budget-seconds). */
export const REFUSE_AWAITING_BUDGET = "awaiting_budget";
export const REFUSE_REASONS = [REFUSE_CAPACITY, REFUSE_RATE, REFUSE_DRAINING, REFUSE_UPSTREAM, REFUSE_AWAITING_BUDGET] as const;

/** Longest Retry-After, in seconds, while awaiting a budget: a push normally comes within one scrape interval. */
export const AWAITING_BUDGET_RETRY_SECONDS = 5;

export interface Refusal {
  statusCode: number;
  reason: (typeof REFUSE_REASONS)[number];
  retryAfterSeconds: number;
}

/**
 * Decides, before the app is touched, whether a new WebSocket may be proxied, and whether
 * the pod reports ready. Pure apart from the injected clock.
 */
export class Admission {
  private limits: Limits;
  private ready = true;
  private draining = false;
  private readonly bucket: TokenBucket;
  /** Clock time (ms) until which new upgrades wait for the operator's first push; null = not waiting. */
  private awaitBudgetUntilMs: number | null;

  /**
   * @param awaitBudgetSeconds until the first push (or this many seconds), refuse new upgrades
   *   and report not ready, so a new pod cannot admit past the cluster cap before the operator
   *   gave it a share; 0 = admit on the flags at once.
   */
  constructor(limits: Limits, private readonly now: () => number = Date.now, awaitBudgetSeconds = 0) {
    this.limits = { ...limits };
    this.awaitBudgetUntilMs = awaitBudgetSeconds > 0 ? now() + awaitBudgetSeconds * 1000 : null;
    this.bucket = new TokenBucket(now);
    this.bucket.configure(limits.upgradeRatePerSecond, limits.upgradeBurst);
  }

  get current(): Readonly<Limits> {
    return this.limits;
  }

  /** Connections admitted at most: the pod cap and the cluster budget, whichever is lower; Infinity = none. */
  get effectiveCap(): number {
    const cap = this.limits.maxConnections > 0 ? this.limits.maxConnections : Infinity;
    return this.limits.connectionBudget === null ? cap : Math.min(cap, this.limits.connectionBudget);
  }

  update(limits: Limits): void {
    // The operator pushes every interval: only a changed rate or burst resets the bucket, else
    // each push would hand out a fresh burst (and a throttle could never hold).
    const changed = limits.upgradeRatePerSecond !== this.limits.upgradeRatePerSecond || limits.upgradeBurst !== this.limits.upgradeBurst;
    this.limits = { ...limits };
    if (changed) this.bucket.configure(limits.upgradeRatePerSecond, limits.upgradeBurst);
  }

  /** Turns readiness off for good and refuses every new upgrade. */
  startDraining(): void {
    this.draining = true;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Whether new upgrades still wait for the operator's first push (false once it came or the wait ran out). */
  get isAwaitingBudget(): boolean {
    if (this.awaitBudgetUntilMs !== null && this.now() >= this.awaitBudgetUntilMs) this.awaitBudgetUntilMs = null;
    return this.awaitBudgetUntilMs !== null;
  }

  /** The operator pushed a config: stop waiting for one. */
  budgetReceived(): void {
    this.awaitBudgetUntilMs = null;
  }

  /**
   * Admits or refuses one upgrade. `open` counts connections already proxied plus upgrades
   * still in flight to the app, so a burst cannot overshoot the cap.
   */
  checkUpgrade(open: number): Refusal | null {
    if (this.draining) return { statusCode: 503, reason: REFUSE_DRAINING, retryAfterSeconds: 5 };
    if (this.isAwaitingBudget) {
      const leftSeconds = Math.ceil((this.awaitBudgetUntilMs! - this.now()) / 1000);
      return { statusCode: 503, reason: REFUSE_AWAITING_BUDGET, retryAfterSeconds: Math.max(1, Math.min(AWAITING_BUDGET_RETRY_SECONDS, leftSeconds)) };
    }
    if (open >= this.effectiveCap) return { statusCode: 503, reason: REFUSE_CAPACITY, retryAfterSeconds: 10 };
    if (!this.bucket.take()) {
      return { statusCode: 429, reason: REFUSE_RATE, retryAfterSeconds: this.bucket.secondsUntilToken() };
    }
    return null;
  }

  /** The readiness latch: off at rejectAtPercent, on again below it minus the hysteresis. */
  isReady(open: number): boolean {
    if (this.draining || this.isAwaitingBudget) return false;
    const max = this.effectiveCap;
    if (max === Infinity) return (this.ready = true);
    const percent = max === 0 ? Infinity : (open / max) * 100;
    if (this.ready && percent >= this.limits.rejectAtPercent) this.ready = false;
    else if (!this.ready && percent < this.limits.rejectAtPercent - READY_HYSTERESIS_PERCENT) this.ready = true;
    return this.ready;
  }
}

/** A token bucket over an injected clock (milliseconds). Rate 0 disables it. */
export class TokenBucket {
  private rate = 0;
  private burst = 0;
  private tokens = 0;
  private last: number;

  constructor(private readonly now: () => number) {
    this.last = now();
  }

  configure(ratePerSecond: number, burst: number): void {
    this.rate = ratePerSecond;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
    this.last = this.now();
  }

  take(): boolean {
    if (this.rate <= 0) return true;
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whole seconds until the next token, at least 1 (the Retry-After value). */
  secondsUntilToken(): number {
    if (this.rate <= 0) return 1;
    return Math.max(1, Math.ceil((1 - this.tokens) / this.rate));
  }

  private refill(): void {
    const t = this.now();
    const elapsedSeconds = Math.max(0, t - this.last) / 1000;
    this.last = t;
    this.tokens = Math.min(this.burst, this.tokens + elapsedSeconds * this.rate);
  }
}
