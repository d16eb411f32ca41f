/**
 * Token buckets on channel joins (join floods): one per socket and one for the whole pod. A
 * join that finds either empty is refused by the sidecar with a `phx_reply` error
 * `{reason: "rate_limited"}`; the app never sees it and the socket stays open. Rates are in
 * joins per second, 0 = that bucket is off. Long-poll joins (POSTed batches) are observed, not
 * held, so they are not limited.
 */
export interface JoinLimits {
  /** Sustained joins per second one socket may send (--join-rate); 0 = no limit. */
  joinRatePerSecond: number;
  /** Joins one socket may send in a burst above the rate (--join-burst). */
  joinBurst: number;
  /** Sustained joins per second over every socket of the pod (--pod-join-rate); 0 = no limit. */
  podJoinRatePerSecond: number;
  /** Joins the pod admits in a burst above its rate (--pod-join-burst). */
  podJoinBurst: number;
}

/** Which bucket refused a join; the index into {@link JoinThrottle.refused}. */
export const JOIN_LIMIT_SOCKET = 0;
export const JOIN_LIMIT_POD = 1;
export const JOIN_LIMIT_SCOPES = ["socket", "pod"] as const;

/** One socket's bucket state, kept by the socket (two numbers; full until first used). */
export class SocketJoinBucket {
  tokens = NaN;
  lastMs = 0;
}

export class JoinThrottle {
  private limits: JoinLimits;
  private podTokens: number;
  private podLastMs: number;
  /** Joins refused, by scope (JOIN_LIMIT_*), for metrics. */
  readonly refused = new Float64Array(JOIN_LIMIT_SCOPES.length);

  constructor(limits: JoinLimits, private readonly now: () => number = Date.now) {
    this.limits = { ...limits };
    this.podTokens = Math.max(1, limits.podJoinBurst);
    this.podLastMs = now();
  }

  /** Whether any bucket is on (joins may be refused, so client frames are held to decide). */
  get enabled(): boolean {
    return this.limits.joinRatePerSecond > 0 || this.limits.podJoinRatePerSecond > 0;
  }

  get current(): Readonly<JoinLimits> {
    return this.limits;
  }

  /**
   * New limits (flags, or a PUT /config). Tokens are kept, only capped at a lower burst: the
   * operator pushes every interval, and refilling on each push would hand out a burst each time.
   */
  configure(limits: JoinLimits): void {
    this.refillPod(this.now());
    this.limits = { ...limits };
    this.podTokens = Math.min(this.podTokens, Math.max(1, limits.podJoinBurst));
  }

  /** One join on `socket`: true = it may go to the app (a token of each bucket spent), false = refuse it. */
  admit(socket: SocketJoinBucket): boolean {
    const t = this.now();
    const l = this.limits;
    if (l.joinRatePerSecond > 0) {
      const burst = Math.max(1, l.joinBurst);
      socket.tokens = Number.isNaN(socket.tokens) ? burst : Math.min(burst, socket.tokens + (Math.max(0, t - socket.lastMs) / 1000) * l.joinRatePerSecond);
      socket.lastMs = t;
      if (socket.tokens < 1) return this.refuse(JOIN_LIMIT_SOCKET);
    }
    if (l.podJoinRatePerSecond > 0) {
      this.refillPod(t);
      if (this.podTokens < 1) return this.refuse(JOIN_LIMIT_POD);
      this.podTokens -= 1;
    }
    if (l.joinRatePerSecond > 0) socket.tokens -= 1;
    return true;
  }

  private refuse(scope: number): false {
    this.refused[scope]!++;
    return false;
  }

  private refillPod(t: number): void {
    const elapsedSeconds = Math.max(0, t - this.podLastMs) / 1000;
    this.podLastMs = t;
    if (this.limits.podJoinRatePerSecond > 0) {
      this.podTokens = Math.min(Math.max(1, this.limits.podJoinBurst), this.podTokens + elapsedSeconds * this.limits.podJoinRatePerSecond);
    }
  }
}
