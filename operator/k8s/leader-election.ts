// Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm and
// controller-runtime's defaults (OPERATOR-NOTES §3): leaseDuration 15 s, renewDeadline 10 s,
// retryPeriod 2 s.
//
// - A candidate takes the lease when it is absent, released (no holder), already its own, or
//   expired **by its own observation**: the record has not changed for a full leaseDuration on
//   the candidate's clock. Timestamps written by the holder are never compared with local time,
//   so clock skew between replicas does not matter; only clock *rate* does.
// - Writes are optimistic (replace with metadata.resourceVersion): of two candidates racing for
//   an expired lease exactly one write succeeds, the other gets 409 Conflict.
// - Every duration (expiry observation, renew deadline, retry pacing, holdsLease) is measured
//   on a monotonic clock (performance.now): a wall clock stepped by NTP or by hand must not make
//   a candidate take over early or a leader believe it still holds the lease. Only the
//   timestamps written into the Lease (acquireTime, renewTime) are wall time.
// - There is no fencing on other objects: a leader that stalls (GC pause, CPU starvation,
//   network partition) may wake after its successor took over. holdsLease() is the fence the
//   caller applies to its own writes (guardMethods): it is true only within renewDeadline of
//   the last successful renewal, which ends leaseDuration − renewDeadline (5 s by default)
//   before any other candidate can see the lease expire.
import type { KubeConfig } from "@kubernetes/client-node";
import { monotonicNow, realDelay, type Clock, type Delay } from "./backoff.js";
import { apiStatusCode, kubeRequest, microTime, seg } from "./request.js";

export interface LeaderElectionOptions {
  kc: KubeConfig;
  namespace: string;
  /** Lease name, e.g. "connmeter-operator". */
  name: string;
  /** Unique per replica, e.g. the pod name plus a random suffix. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Monotonic milliseconds for every duration; performance.now by default. */
  clock?: Clock;
  /** Wall-clock milliseconds for the Lease's acquireTime and renewTime; Date.now by default. */
  wallClock?: Clock;
  delay?: Delay;
  random?: () => number;
  log?: (line: string) => void;
  /** This replica now leads: start the controllers. */
  onStartedLeading: () => void;
  /**
   * Leadership was lost (no renewal within renewDeadline, or another holder was seen). The
   * caller MUST exit the process at once, without graceful shutdown: another replica may
   * already be acting, and in-flight work of this one would race it. Not called when the
   * caller aborts run()'s signal (graceful shutdown is the caller's own decision).
   */
  onStoppedLeading: () => void;
  /** The observed holder changed (also on start). */
  onNewLeader?: (identity: string) => void;
  /** Replaces the API server (unit tests). */
  api?: LeaseApi;
}

/** The Lease fields the election uses (coordination.k8s.io/v1 LeaseSpec). */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

/** get (undefined when absent), create and replace of one Lease; errors carry statusCode. */
export interface LeaseApi {
  get(signal: AbortSignal): Promise<Lease | undefined>;
  create(lease: Lease, signal: AbortSignal): Promise<Lease>;
  replace(lease: Lease, signal: AbortSignal): Promise<Lease>;
}

/** How long a leader may go without a successful renewal before it stops acting, ms (controller-runtime's default). */
export const RENEW_DEADLINE_MS = 10_000;

/** client-go's JitterFactor: a candidate retries every retryPeriod × [1, 2.2). */
const JITTER_FACTOR = 1.2;

/**
 * One replica's view of the election. `run()` campaigns until it leads, then renews every
 * retryPeriod until the signal aborts or renewal fails.
 */
export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly wallClock: Clock;
  private readonly delay: Delay;
  private readonly random: () => number;
  private readonly log: (line: string) => void;
  private readonly api: LeaseApi;
  /** The record as last seen (JSON) and when, on our clock: the basis of expiry. */
  private observedRecord = "";
  private observedAt = 0;
  /** The lease as we last wrote it (its resourceVersion lets a renewal skip the GET). */
  private written: Lease | undefined;
  /** When (monotonic ms) the write behind our last successful acquire or renewal was started. */
  private renewedAt: number | undefined;
  private leading = false;
  private currentLeader: string | undefined;
  private released = false;

  constructor(o: LeaderElectionOptions) {
    this.o = o;
    this.leaseDurationMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? RENEW_DEADLINE_MS;
    this.retryPeriodMs = o.retryPeriodMs ?? 2_000;
    if (!(this.retryPeriodMs > 0)) throw new Error("leader election: retryPeriod must be > 0");
    if (!(this.leaseDurationMs > this.renewDeadlineMs)) throw new Error("leader election: leaseDuration must be greater than renewDeadline");
    if (!(this.renewDeadlineMs > JITTER_FACTOR * this.retryPeriodMs)) throw new Error(`leader election: renewDeadline must be greater than ${JITTER_FACTOR} × retryPeriod`);
    if (!o.identity) throw new Error("leader election: identity must not be empty");
    this.clock = o.clock ?? monotonicNow;
    this.wallClock = o.wallClock ?? Date.now;
    this.delay = o.delay ?? realDelay;
    this.random = o.random ?? Math.random;
    this.log = o.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.api = o.api ?? leaseApi(o.kc, o.namespace, o.name);
  }

  /** Whether this replica currently holds the lease (as of its last successful write). */
  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Whether this replica may act as leader now: it leads, and its last successful renewal
   * started less than renewDeadline ago on the monotonic clock. Unlike isLeader, this turns
   * false during a stall (the renewal loop cannot run), before any other replica can take over.
   */
  holdsLease(): boolean {
    return this.leading && this.renewedAt !== undefined && this.clock() - this.renewedAt < this.renewDeadlineMs;
  }

  /** Throws NotLeadingError unless holdsLease(); call it before every write to the cluster. */
  assertLeading(): void {
    if (this.holdsLease()) return;
    if (!this.leading || this.renewedAt === undefined) throw new NotLeadingError("not leading: this replica does not hold the Lease");
    const ageMs = Math.round(this.clock() - this.renewedAt);
    throw new NotLeadingError(`not leading: the Lease was last renewed ${ageMs} ms ago, over renewDeadline (${this.renewDeadlineMs} ms)`);
  }

  /** The holder last observed, or undefined before the first read / after a release. */
  get leader(): string | undefined {
    return this.currentLeader;
  }

  /**
   * Campaigns, leads, renews. Resolves when `signal` aborts or leadership is lost (after
   * onStoppedLeading). Aborting does not release the lease: call release() for that.
   */
  async run(signal: AbortSignal): Promise<void> {
    const where = `lease ${this.o.namespace}/${this.o.name}`;
    this.log(`leader election: ${this.o.identity} campaigning for ${where}`);
    while (!signal.aborted && !this.released) {
      if (await this.tryAcquireOrRenew(signal, this.retryPeriodMs)) break;
      await this.sleep(this.retryPeriodMs * (1 + JITTER_FACTOR * this.random()), signal);
    }
    if (signal.aborted || this.released) return;
    this.leading = true;
    this.log(`leader election: ${this.o.identity} acquired ${where}`);
    this.o.onStartedLeading();
    try {
      for (;;) {
        await this.sleep(this.retryPeriodMs, signal);
        if (signal.aborted || this.released) return;
        const lostBecause = await this.renew(signal);
        if (signal.aborted || this.released) return;
        if (lostBecause) {
          this.leading = false;
          this.log(`leader election: ${this.o.identity} lost ${where}: ${lostBecause}`);
          this.o.onStoppedLeading();
          return;
        }
      }
    } finally {
      // Not renewing any more: whatever the lease says, this replica must not act as leader.
      this.leading = false;
    }
  }

  /**
   * Gives the lease up so a standby takes over within about one retryPeriod instead of a
   * leaseDuration: writes no holder and a 1 s duration (controller-runtime's
   * LeaderElectionReleaseOnCancel). Stops run() from renewing. Only safe right before the
   * process exits, after its controllers stopped: the successor starts acting at once.
   * Never throws; a failure only means the standby waits out the lease.
   */
  async release(): Promise<void> {
    this.released = true;
    const signal = AbortSignal.timeout(this.renewDeadlineMs);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const lease = await this.api.get(signal);
        if (!lease || lease.spec?.holderIdentity !== this.o.identity) break;
        const wall = microTime(this.wallClock());
        const spec: LeaseSpec = { leaseDurationSeconds: 1, acquireTime: wall, renewTime: wall, leaseTransitions: lease.spec.leaseTransitions ?? 0 };
        try {
          await this.api.replace({ ...lease, spec }, signal);
          this.log(`leader election: ${this.o.identity} released lease ${this.o.namespace}/${this.o.name}`);
          break;
        } catch (err) {
          // 409: our own renewal raced the release; read again and retry.
          if (apiStatusCode(err) !== 409) throw err;
        }
      }
    } catch (err) {
      this.log(`leader election: release failed (the standby will wait out the lease): ${message(err)}`);
    }
    this.leading = false;
    this.written = undefined;
    this.renewedAt = undefined;
  }

  /** Retries renewal every retryPeriod until renewDeadline; returns why it failed, or undefined. */
  private async renew(signal: AbortSignal): Promise<string | undefined> {
    const deadline = this.clock() + this.renewDeadlineMs;
    for (;;) {
      const remaining = deadline - this.clock();
      if (remaining <= 0) return `no successful renewal within renewDeadline (${this.renewDeadlineMs} ms)`;
      if (await this.tryAcquireOrRenew(signal, remaining)) return undefined;
      if (signal.aborted) return undefined;
      if (this.currentLeader && this.currentLeader !== this.o.identity) return `${this.currentLeader} holds it now`;
      await this.sleep(Math.min(this.retryPeriodMs, Math.max(0, deadline - this.clock())), signal);
    }
  }

  /** One election step; true when we hold the lease afterwards. Never throws. */
  private async tryAcquireOrRenew(outer: AbortSignal, timeoutMs: number): Promise<boolean> {
    // A monotonic clock gives fractions of a millisecond; AbortSignal.timeout takes whole ones only.
    const signal = AbortSignal.any([outer, AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)))]);
    const now = this.clock();
    const wall = microTime(this.wallClock());
    const durationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    try {
      // Fast path: while leading, renew on top of our own last write. A 409 means someone
      // else wrote; the slow path below reads what.
      if (this.leading && this.written?.spec) {
        const spec = { ...this.written.spec, renewTime: wall, leaseDurationSeconds: durationSeconds };
        try {
          this.recordWrite(await this.api.replace({ ...this.written, spec }, signal), now);
          return true;
        } catch (err) {
          this.written = undefined;
          if (apiStatusCode(err) !== 409) throw err;
        }
      }
      const current = await this.api.get(signal);
      if (!current) {
        const spec: LeaseSpec = { holderIdentity: this.o.identity, leaseDurationSeconds: durationSeconds, acquireTime: wall, renewTime: wall, leaseTransitions: 0 };
        const lease: Lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: this.o.name, namespace: this.o.namespace }, spec };
        this.recordWrite(await this.api.create(lease, signal), now);
        return true;
      }
      const old = current.spec ?? {};
      const record = JSON.stringify([old.holderIdentity ?? "", old.leaseDurationSeconds, old.acquireTime, old.renewTime, old.leaseTransitions]);
      if (record !== this.observedRecord) {
        this.observedRecord = record;
        this.observedAt = now;
      }
      const holder = old.holderIdentity ?? "";
      this.noteLeader(holder);
      const validUntil = this.observedAt + (old.leaseDurationSeconds ?? 0) * 1000;
      if (holder && holder !== this.o.identity && validUntil > now) return false;
      const ours = holder === this.o.identity;
      const spec: LeaseSpec = {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: ours && old.acquireTime ? old.acquireTime : wall,
        renewTime: wall,
        leaseTransitions: ours ? (old.leaseTransitions ?? 0) : (old.leaseTransitions ?? 0) + 1,
      };
      this.recordWrite(await this.api.replace({ ...current, spec }, signal), now);
      return true;
    } catch (err) {
      if (outer.aborted) return false;
      // 409 on create/replace: another candidate won this round; not worth a loud log.
      if (apiStatusCode(err) !== 409) this.log(`leader election: ${this.o.identity}: lease ${this.o.namespace}/${this.o.name}: ${message(err)}`);
      return false;
    }
  }

  /** `now` is when the write was started: the server saw it later, so validity counts from here. */
  private recordWrite(lease: Lease, now: number): void {
    this.written = lease;
    this.renewedAt = now;
    const s = lease.spec ?? {};
    this.observedRecord = JSON.stringify([s.holderIdentity ?? "", s.leaseDurationSeconds, s.acquireTime, s.renewTime, s.leaseTransitions]);
    this.observedAt = now;
    this.noteLeader(this.o.identity);
  }

  private noteLeader(holder: string): void {
    const next = holder || undefined;
    if (next === this.currentLeader) return;
    this.currentLeader = next;
    if (next) {
      this.log(`leader election: ${this.o.identity} sees leader ${next}`);
      this.o.onNewLeader?.(next);
    }
  }

  private async sleep(ms: number, signal: AbortSignal): Promise<void> {
    try {
      await this.delay(ms, signal);
    } catch {
      // Aborted: callers check the signal.
    }
  }
}

/** A write refused because this replica cannot be sure it still leads. */
export class NotLeadingError extends Error {
  override readonly name = "NotLeadingError";
}

/**
 * Wraps `target` so that each of its methods (all of them, including ones added later, or only
 * those named in `only`) runs `check` first. The methods must be asynchronous: a refused call
 * returns a rejected promise with check's error, as a failed write would, so callers that
 * handle write errors with .catch() or try/await handle this one too. Methods run on the real
 * target, so private fields work.
 */
export function guardMethods<T extends object>(target: T, check: () => void, only?: ReadonlyArray<keyof T>): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== "function" || (only && !only.includes(prop as keyof T))) return value;
      let w = wrapped.get(prop) as { fn: unknown; guarded: unknown } | undefined;
      if (w?.fn !== value) {
        const fn = value as (...args: unknown[]) => unknown;
        const guarded = (...args: unknown[]): unknown => {
          try {
            check();
          } catch (err) {
            return Promise.reject(err as Error);
          }
          return Reflect.apply(fn, t, args);
        };
        w = { fn: value, guarded };
        wrapped.set(prop, w);
      }
      return w.guarded;
    },
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The Lease API over the real API server. */
export function leaseApi(kc: KubeConfig, namespace: string, name: string): LeaseApi {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${seg(namespace)}/leases`;
  const item = `${collection}/${seg(name)}`;
  return {
    async get(signal) {
      try {
        return await kubeRequest<Lease>(kc, { method: "GET", path: item, signal });
      } catch (err) {
        if (apiStatusCode(err) === 404) return undefined;
        throw err;
      }
    },
    create: (lease, signal) => kubeRequest<Lease>(kc, { method: "POST", path: collection, body: lease, signal }),
    // PUT carries metadata.resourceVersion: the server refuses it (409) if the lease changed.
    replace: (lease, signal) => kubeRequest<Lease>(kc, { method: "PUT", path: item, body: lease, signal }),
  };
}
