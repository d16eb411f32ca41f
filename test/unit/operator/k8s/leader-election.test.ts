import { describe, expect, it } from "vitest";
import { LeaderElector, NotLeadingError, guardMethods, type Lease, type LeaseApi } from "../../../../operator/k8s/leader-election.js";
import { KubeApiError } from "../../../../operator/k8s/request.js";
import { FakeTime, settle } from "./fake-time.js";

/** One Lease with the API server's optimistic concurrency: a stale resourceVersion gets 409. */
class FakeLeaseServer {
  lease: Lease | undefined;
  private rv = 0;
  failing = new Set<string>();
  writes = 0;

  api(who: string): LeaseApi {
    const check = () => {
      if (this.failing.has(who)) throw new Error(`${who}: connection refused`);
    };
    return {
      get: async () => {
        check();
        return this.lease && structuredClone(this.lease);
      },
      create: async (lease) => {
        check();
        if (this.lease) throw new KubeApiError(409, "already exists", "AlreadyExists", "POST");
        this.lease = { ...structuredClone(lease), metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
        this.writes++;
        return structuredClone(this.lease);
      },
      replace: async (lease) => {
        check();
        if (!this.lease) throw new KubeApiError(404, "not found", "NotFound", "PUT");
        if (lease.metadata.resourceVersion !== this.lease.metadata.resourceVersion) throw new KubeApiError(409, "conflict", "Conflict", "PUT");
        this.lease = { ...structuredClone(lease), metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
        this.writes++;
        return structuredClone(this.lease);
      },
    };
  }
}

function candidate(server: FakeLeaseServer, time: FakeTime, identity: string, wallClock: () => number = time.clock, clock: () => number = time.clock) {
  const events: string[] = [];
  const elector = new LeaderElector({
    kc: undefined as never, namespace: "ns", name: "lock", identity, api: server.api(identity),
    clock, wallClock, delay: time.delay, random: () => 0, log: () => undefined,
    onStartedLeading: () => events.push(`started@${time.now}`),
    onStoppedLeading: () => events.push(`stopped@${time.now}`),
    onNewLeader: (id) => events.push(`leader=${id}`),
  });
  const abort = new AbortController();
  return { elector, events, abort, run: () => elector.run(abort.signal) };
}

describe("LeaderElector", () => {
  it("validates leaseDuration > renewDeadline > 1.2 × retryPeriod", () => {
    const base = { kc: undefined as never, namespace: "n", name: "l", identity: "i", onStartedLeading: () => undefined, onStoppedLeading: () => undefined };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(/leaseDuration must be greater/);
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 2_400, retryPeriodMs: 2_000 })).toThrow(/1.2 × retryPeriod/);
    expect(() => new LeaderElector({ ...base, identity: "" })).toThrow(/identity/);
    expect(() => new LeaderElector(base)).not.toThrow();
  });

  it("creates an absent lease and leads; a second candidate waits", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    const b = candidate(server, time, "b");
    void a.run();
    await settle();
    void b.run();
    await time.advance(30_000);
    expect(a.elector.isLeader).toBe(true);
    expect(b.elector.isLeader).toBe(false);
    expect(b.elector.leader).toBe("a");
    expect(a.events).toEqual(["leader=a", "started@0"]);
    expect(server.lease?.spec).toMatchObject({ holderIdentity: "a", leaseDurationSeconds: 15, leaseTransitions: 0 });
    a.abort.abort();
    b.abort.abort();
  });

  it("takes over only after the record stayed unchanged for a full leaseDuration on its own clock", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    void a.run();
    await settle();
    const b = candidate(server, time, "b");
    void b.run();
    await time.advance(10_000);
    a.abort.abort(); // killed: no release, no more renewals
    await settle();
    expect(a.elector.isLeader).toBe(false);
    const frozenAt = time.now;
    let tookOverAt: number | undefined;
    for (let t = 0; t < 30_000 && tookOverAt === undefined; t += 100) {
      await time.advance(100);
      if (b.elector.isLeader) tookOverAt = time.now;
    }
    // b saw the last renewal at or before frozenAt; it must wait ≥ 15 s after its observation
    // of that record, and polls every 2 s (random 0 here): so 13-17 s after the freeze.
    expect(tookOverAt! - frozenAt).toBeGreaterThanOrEqual(13_000);
    expect(tookOverAt! - frozenAt).toBeLessThanOrEqual(17_100);
    expect(server.lease?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    expect(a.events).not.toContain(expect.stringMatching(/^stopped/));
    b.abort.abort();
  });

  it("a released lease is taken at the next retry", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    void a.run();
    await settle();
    const b = candidate(server, time, "b");
    void b.run();
    await time.advance(5_000);
    a.abort.abort();
    await a.elector.release();
    expect(server.lease?.spec?.holderIdentity).toBeUndefined();
    expect(server.lease?.spec?.leaseDurationSeconds).toBe(1);
    const t0 = time.now;
    while (!b.elector.isLeader && time.now - t0 < 10_000) await time.advance(100);
    expect(time.now - t0).toBeLessThanOrEqual(2_100);
    expect(server.lease?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    expect(a.elector.isLeader).toBe(false);
    b.abort.abort();
  });

  it("calls onStoppedLeading when it cannot renew within renewDeadline", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    const done = a.run();
    await time.advance(4_000);
    server.failing.add("a");
    const failedAt = time.now;
    await time.advance(20_000);
    await done;
    const stopped = a.events.find((e) => e.startsWith("stopped@"));
    const at = Number(stopped?.split("@")[1]);
    expect(a.elector.isLeader).toBe(false);
    // The renewal that fails starts ≤ 2 s after the failure, and gives up 10 s later.
    expect(at - failedAt).toBeGreaterThanOrEqual(10_000);
    expect(at - failedAt).toBeLessThanOrEqual(12_100);
  });

  it("stops leading at once when it sees another holder (its renewals were not seen in time)", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    const done = a.run();
    await time.advance(3_000);
    // Someone else took the lease (e.g. after a partition longer than leaseDuration).
    server.lease = { ...server.lease!, metadata: { ...server.lease!.metadata, resourceVersion: "999" }, spec: { ...server.lease!.spec, holderIdentity: "z", renewTime: "x" } };
    await time.advance(2_100);
    await done;
    expect(a.events.filter((e) => e.startsWith("stopped@"))).toHaveLength(1);
    expect(a.elector.leader).toBe("z");
  });

  it("of two candidates racing for an absent lease exactly one wins", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    const b = candidate(server, time, "b");
    void a.run();
    void b.run();
    await time.advance(20_000);
    expect([a.elector.isLeader, b.elector.isLeader].filter(Boolean)).toHaveLength(1);
    a.abort.abort();
    b.abort.abort();
  });

  it("the leader renews every retryPeriod without reading first", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    void a.run();
    await time.advance(10_000);
    expect(server.writes).toBe(6); // create at 0, renewals at 2, 4, 6, 8, 10 s
    expect(server.lease?.spec?.acquireTime).toBe("1970-01-01T00:00:00.000000Z");
    expect(server.lease?.spec?.renewTime).toBe("1970-01-01T00:00:10.000000Z");
    a.abort.abort();
  });

  it("renews on a monotonic clock that reads fractions of a millisecond, as performance.now does", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    // Each read a little later than the last, within the same fake millisecond.
    let at = -1;
    let fraction = 0;
    const clock = () => {
      if (time.now !== at) [at, fraction] = [time.now, 0];
      fraction += 0.0371;
      return time.now + fraction;
    };
    const a = candidate(server, time, "a", time.clock, clock);
    const run = a.run();
    await time.advance(10_000);
    expect(server.writes).toBe(6);
    expect(a.elector.holdsLease()).toBe(true);
    a.abort.abort();
    await run;
  });

  it("writes wall-clock timestamps to the Lease but measures every duration on the monotonic clock", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    let wall = Date.UTC(2026, 0, 1);
    const a = candidate(server, time, "a", () => wall + time.now);
    void a.run();
    await time.advance(4_000);
    expect(server.lease?.spec?.renewTime).toBe("2026-01-01T00:00:04.000000Z");
    // The wall clock steps back an hour (NTP): renewals go on every retryPeriod and the lease
    // stays held, because no duration is measured on it.
    wall -= 3_600_000;
    await time.advance(4_000);
    expect(server.writes).toBe(5);
    expect(a.elector.holdsLease()).toBe(true);
    expect(server.lease?.spec?.renewTime).toBe("2025-12-31T23:00:08.000000Z");
    a.abort.abort();
  });

  it("holdsLease() turns false when a stall outlasts renewDeadline, before any renewal attempt runs", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    expect(a.elector.holdsLease()).toBe(false);
    void a.run();
    await time.advance(4_000);
    expect(a.elector.holdsLease()).toBe(true); // last renewed at 4 s
    const writes = server.writes;
    // The event loop stalls (GC pause, CPU starvation): time moves, no timer fires.
    time.now += 9_999;
    expect(a.elector.holdsLease()).toBe(true);
    time.now += 1;
    expect(a.elector.holdsLease()).toBe(false);
    expect(a.elector.isLeader).toBe(true); // run() has not noticed anything yet
    expect(server.writes).toBe(writes);
    expect(() => a.elector.assertLeading()).toThrow(NotLeadingError);
    expect(() => a.elector.assertLeading()).toThrow("not leading: the Lease was last renewed 10000 ms ago, over renewDeadline (10000 ms)");
    // The loop wakes, renews on top of its own record (nobody else wrote), and holds it again.
    await time.advance(0);
    expect(server.writes).toBe(writes + 1);
    expect(a.elector.holdsLease()).toBe(true);
    a.abort.abort();
  });

  it("holdsLease() is false for a standby and after a release", async () => {
    const server = new FakeLeaseServer();
    const time = new FakeTime();
    const a = candidate(server, time, "a");
    const b = candidate(server, time, "b");
    void a.run();
    await settle();
    void b.run();
    await time.advance(5_000);
    expect(b.elector.holdsLease()).toBe(false);
    expect(() => b.elector.assertLeading()).toThrow("not leading: this replica does not hold the Lease");
    a.abort.abort();
    await a.elector.release();
    expect(a.elector.holdsLease()).toBe(false);
    b.abort.abort();
  });
});

describe("guardMethods", () => {
  class Writer {
    calls: string[] = [];
    readonly #secret = "s"; // a private field: the guard must call methods on the real object
    async patchScale(n: number): Promise<string> {
      this.calls.push(`scale ${n}`);
      return this.#secret;
    }
    async stats(): Promise<number> {
      return 7;
    }
  }

  it("runs the check before every method, refuses with a rejected promise, and passes results through", async () => {
    let leading = true;
    const target = new Writer();
    const w = guardMethods(target, () => {
      if (!leading) throw new NotLeadingError("not leading: test");
    });
    await expect(w.patchScale(3)).resolves.toBe("s");
    leading = false;
    const refused = w.patchScale(4);
    await expect(refused).rejects.toThrow("not leading: test");
    await expect(w.stats()).rejects.toBeInstanceOf(NotLeadingError);
    expect(target.calls).toEqual(["scale 3"]);
  });

  it("guards only the named methods when given a list, and methods added later by default", async () => {
    const target = new Writer();
    const w = guardMethods(target, () => { throw new NotLeadingError("no"); }, ["patchScale"]);
    await expect(w.stats()).resolves.toBe(7);
    await expect(w.patchScale(1)).rejects.toThrow("no");
    const plain = { a: async () => 1 } as Record<string, () => Promise<number>>;
    const g = guardMethods(plain, () => { throw new NotLeadingError("no"); });
    plain.b = async () => 2;
    await expect(g.b!()).rejects.toThrow("no");
  });
});
