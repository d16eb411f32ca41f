// The reconciler against in-memory fakes: listers over arrays, a writer that applies its patches
// to them (as the API server and the informer caches would), a recording event sink, canned
// sidecar answers and a clock the test advances.
import { describe, expect, it } from "vitest";
import { OperatorMetrics } from "../../../../operator/admin/metrics.js";
import type { SidecarSample } from "../../../../operator/aggregate/aggregate.js";
import type { ConnectionPolicy, PolicyStatus, TargetKind } from "../../../../operator/api/types.js";
import type { ClusterWriter, EventSink, HpaLike, Lister, ObjectRef, PodLike, WorkloadLike } from "../../../../operator/controller/cluster.js";
import { refreshDueMs } from "../../../../operator/controller/budget-plan.js";
import { Reconciler } from "../../../../operator/controller/reconciler.js";
import type { SidecarConfig } from "../../../../operator/scrape/sidecar-client.js";
import { SidecarError } from "../../../../operator/scrape/sidecar-client.js";

const NS = "shop";
const KEY = `${NS}/chat-policy`;
const INTERVAL_MS = 5000;
const T0 = Date.parse("2026-03-01T12:00:00Z");

interface Named { metadata?: { name?: string; namespace?: string } }

class ArrayLister<T extends Named> implements Lister<T> {
  constructor(readonly items: T[] = []) {}
  get(namespace: string, name: string): T | undefined {
    return this.items.find((o) => o.metadata?.namespace === namespace && o.metadata.name === name);
  }
  list(namespace?: string): T[] {
    return this.items.filter((o) => namespace === undefined || o.metadata?.namespace === namespace);
  }
}

type Write =
  | { op: "status"; status: Record<string, unknown> }
  | { op: "scale"; kind: TargetKind; name: string; replicas: number }
  | { op: "annotate"; pod: string; annotations: Record<string, string | null> }
  | { op: "getDeployment"; name: string }
  | { op: "pause"; name: string; resourceVersion: string; outcome: "ok" | "conflict" };

function pod(name: string, ip: string, node: string, ready = true): PodLike {
  return {
    metadata: { name, namespace: NS, labels: { app: "chat" }, annotations: {} },
    spec: { nodeName: node },
    status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  };
}

const sample = (connections: number, channels = 0, topics: Record<string, number> = {}, longpoll = 0): SidecarSample =>
  ({ connections, channels, longpoll, topics });

function world(opts: { spec?: Partial<ConnectionPolicy["spec"]>; replicas?: number; pods?: PodLike[]; target?: boolean; hpa?: boolean } = {}) {
  let now = T0;
  const policy: ConnectionPolicy = {
    apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy",
    metadata: { name: "chat-policy", namespace: NS, uid: "uid-1", generation: 1, resourceVersion: "1" },
    spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: INTERVAL_MS / 1000, ...opts.spec },
  };
  const deployment: WorkloadLike = { metadata: { name: "chat", namespace: NS }, spec: { replicas: opts.replicas ?? 2, selector: { matchLabels: { app: "chat" } } } };
  /** The Deployment as a GET shows it (the rollout guard's pause): its generation and resourceVersion; `beforePause` runs between the GET and the PATCH. */
  const served = { generation: 1, resourceVersion: 10, beforePause: undefined as (() => void) | undefined, cacheLags: false, paused: false };
  const caches = {
    policies: new ArrayLister<ConnectionPolicy>([policy]),
    pods: new ArrayLister<PodLike>(opts.pods ?? [pod("chat-a", "198.18.0.1", "node-1"), pod("chat-b", "198.18.0.2", "node-2")]),
    deployments: new ArrayLister<WorkloadLike>(opts.target === false ? [] : [deployment]),
    statefulSets: new ArrayLister<WorkloadLike>(),
    hpas: new ArrayLister<HpaLike>(opts.hpa
      ? [{ metadata: { name: "chat-hpa", namespace: NS }, spec: { scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" } } }]
      : []),
  };
  const writes: Write[] = [];
  /** Set to make every status write fail (as a 422 from the API server would). */
  const statusFailure: { error: Error | undefined } = { error: undefined };
  const writer: ClusterWriter = {
    async patchPolicyStatus(_ns, name, patch) {
      if (statusFailure.error) throw statusFailure.error;
      writes.push({ op: "status", status: structuredClone(patch) as Record<string, unknown> });
      const index = caches.policies.items.findIndex((p) => p.metadata.name === name);
      const current = caches.policies.items[index]!;
      const merged: Record<string, unknown> = { ...(current.status ?? {}) };
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete merged[k];
        else merged[k] = structuredClone(v);
      }
      // As an informer does: the cache gets a new object; the one a reconcile holds is not changed.
      caches.policies.items[index] = { ...structuredClone(current), status: merged as PolicyStatus };
    },
    async patchPolicyFinalizers(_ns, name, finalizers) {
      const index = caches.policies.items.findIndex((p) => p.metadata.name === name);
      const current = caches.policies.items[index]!;
      caches.policies.items[index] = { ...structuredClone(current), metadata: { ...current.metadata, finalizers } };
    },
    // Scale reads and writes race nobody here (scale-write.test.ts covers conflicts).
    async getScale() {
      return { replicas: deployment.spec!.replicas ?? 0, resourceVersion: "1" };
    },
    async patchScale(kind, _ns, name, replicas) {
      writes.push({ op: "scale", kind, name, replicas });
      deployment.spec!.replicas = replicas;
    },
    async patchPodAnnotations(_ns, name, annotations) {
      writes.push({ op: "annotate", pod: name, annotations });
      const p = caches.pods.get(NS, name)!;
      const a = { ...(p.metadata!.annotations ?? {}) };
      for (const [k, v] of Object.entries(annotations)) {
        if (v === null) delete a[k];
        else a[k] = v;
      }
      p.metadata!.annotations = a;
    },
    async getDeployment(_ns, name) {
      writes.push({ op: "getDeployment", name });
      return { paused: served.paused || deployment.spec!.paused === true, generation: served.generation, resourceVersion: String(served.resourceVersion) };
    },
    // As the API server: a stale resourceVersion is a 409; a pause bumps generation and resourceVersion.
    async pauseDeployment(_ns, name, resourceVersion) {
      const before = served.beforePause;
      served.beforePause = undefined;
      before?.();
      const conflict = resourceVersion !== String(served.resourceVersion);
      writes.push({ op: "pause", name, resourceVersion, outcome: conflict ? "conflict" : "ok" });
      if (conflict) throw Object.assign(new Error("409: the object has been modified"), { statusCode: 409 });
      served.paused = true;
      // the informer cache gets the write later when it lags
      if (!served.cacheLags) deployment.spec!.paused = true;
      served.generation++;
      served.resourceVersion++;
    },
  };
  const events: { reason: string; type: string; note: string; regarding: ObjectRef }[] = [];
  const sink: EventSink = { record: (regarding, type, reason, _action, note) => events.push({ regarding, type, reason, note }) };
  /** What each sidecar (by IP) answers: a sample, or an error to throw. */
  const answers = new Map<string, SidecarSample | Error>();
  const pushes: { ip: string; config: SidecarConfig }[] = [];
  /** What PUT /config of a sidecar (by IP) throws, if anything. */
  const pushErrors = new Map<string, Error>();
  /** The revision PUT /config of a sidecar (by IP) answers; none = an older sidecar. */
  const revisions = new Map<string, string>();
  const resets: string[] = [];
  const scrapes: string[] = [];
  const sidecars = {
    async stats(ip: string): Promise<SidecarSample> {
      scrapes.push(ip);
      const a = answers.get(ip) ?? new SidecarError("refused", `connect ECONNREFUSED ${ip}`);
      if (a instanceof Error) throw a;
      return structuredClone(a);
    },
    // No revision, as a sidecar older than HeldConfig: every interval pushes (see "unchanged configs").
    async pushConfig(ip: string, _port: number, config: SidecarConfig): Promise<string | undefined> {
      const e = pushErrors.get(ip);
      if (e) throw e;
      pushes.push({ ip, config: structuredClone(config) });
      return revisions.get(ip);
    },
    async resetConfig(ip: string): Promise<void> {
      resets.push(ip);
    },
  };
  const reconciler = new Reconciler({ caches, writer, events: sink, sidecars, metrics: new OperatorMetrics(), clock: () => now, log: () => undefined });
  return {
    /** The policy as the cache holds it now. */
    get policy(): ConnectionPolicy { return caches.policies.items[0]!; },
    deployment, served, caches, writes, events, answers, pushes, pushErrors, revisions, statusFailure, resets, scrapes, reconciler,
    advance(ms: number) { now += ms; },
    reconcile: () => reconciler.reconcile(KEY),
    statusWrites: () => writes.filter((w): w is Extract<Write, { op: "status" }> => w.op === "status"),
    condition: (type: string) => caches.policies.items[0]!.status?.conditions?.find((c) => c.type === type),
  };
}

describe("Reconciler: status", () => {
  it("assembles totals, topics, pods, nodes, replicas and conditions from the sidecars' answers", async () => {
    const w = world({ spec: { topics: [{ match: "room:*", maxChannels: 50 }] } });
    w.answers.set("198.18.0.1", sample(10, 6, { "room:1": 4, lobby: 2 }, 2));
    w.answers.set("198.18.0.2", sample(5, 3, { "room:*": 3 }));
    await w.reconcile();
    const s = w.policy.status!;
    expect(s).toMatchObject({
      observedGeneration: 1, connections: 17, channels: 9, longpoll: 2, replicas: 2, desiredReplicas: 2, meteredPods: 2, stalePods: 0,
      topics: [{ name: "room:*", channels: 7, maxChannels: 50 }, { name: "lobby", channels: 2 }],
      pods: [
        { name: "chat-a", node: "node-1", connections: 12, channels: 6, ready: true },
        { name: "chat-b", node: "node-2", connections: 5, channels: 3, ready: true },
      ],
      nodes: [{ name: "node-1", pods: 1, connections: 12, channels: 6 }, { name: "node-2", pods: 1, connections: 5, channels: 3 }],
    });
    expect(s.capacity).toBeUndefined();
    expect(w.statusWrites()[0]!.status.capacity).toBeNull();
    expect(w.condition("Metered")).toMatchObject({ status: "True", reason: "AllPodsScraped", observedGeneration: 1, lastTransitionTime: new Date(T0).toISOString() });
    expect(w.condition("ScalingActive")).toMatchObject({ status: "False", reason: "ObserveOnly" });
    expect(w.condition("ScalingLimited")).toMatchObject({ status: "False" });
    expect(w.condition("AtCapacity")).toMatchObject({ status: "False", reason: "BelowCapacity" });
  });

  it("scrapes only the target's Running pods that have an IP", async () => {
    const other = pod("other", "198.18.0.9", "node-1");
    other.metadata!.labels = { app: "other" };
    const pending = pod("chat-c", "198.18.0.3", "node-1");
    pending.status!.phase = "Pending";
    const noIp = pod("chat-d", "", "node-1");
    const w = world({ pods: [pod("chat-a", "198.18.0.1", "node-1"), other, pending, noIp] });
    w.answers.set("198.18.0.1", sample(1));
    await w.reconcile();
    expect(w.scrapes).toEqual(["198.18.0.1"]);
    expect(w.policy.status?.pods?.map((p) => p.name)).toEqual(["chat-a"]);
  });

  it("writes the status at most once per interval, and not at all when nothing changed", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(2));
    await w.reconcile();
    expect(w.statusWrites()).toHaveLength(1);
    // Events between two scrapes: the counts change, but no write before the next interval.
    for (const dt of [100, 1000, 2000]) {
      w.answers.set("198.18.0.1", sample(dt));
      w.advance(dt);
      await w.reconcile();
    }
    expect(w.statusWrites()).toHaveLength(1);
    w.advance(INTERVAL_MS - 3100);
    w.answers.set("198.18.0.1", sample(1));
    await w.reconcile();
    // The next interval: the counts are back to what was written, so nothing to write.
    expect(w.statusWrites()).toHaveLength(1);
    w.answers.set("198.18.0.1", sample(40));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.statusWrites()).toHaveLength(2);
    expect(w.policy.status?.connections).toBe(42);
  });

  it("asks to run again at the next scrape", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    expect((await w.reconcile()).requeueAfterMs).toBe(INTERVAL_MS);
    w.advance(1500);
    expect((await w.reconcile()).requeueAfterMs).toBe(INTERVAL_MS - 1500);
  });

  it("acts on a new generation at once: rescrapes and writes observedGeneration without waiting for the interval", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    w.policy.metadata.generation = 2;
    w.advance(10);
    await w.reconcile();
    expect(w.scrapes).toHaveLength(4);
    expect(w.statusWrites()).toHaveLength(2);
    expect(w.policy.status?.observedGeneration).toBe(2);
    expect(w.condition("Metered")?.observedGeneration).toBe(2);
  });
});

describe("Reconciler: Ready and the age of the counts", () => {
  it("Ready True with reason Metered when the counts are current and every sidecar took its config", async () => {
    const w = world({ spec: { limits: { maxConnections: 10 } } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    expect(w.condition("Ready")).toMatchObject({ status: "True", reason: "Metered" });
    expect(w.policy.status?.lastUpdateTime).toBe(new Date(T0).toISOString());
  });

  it.each([
    { what: "a missing target", setup: (w: ReturnType<typeof world>) => w.caches.deployments.items.splice(0), reason: "TargetNotFound" },
    { what: "a silent sidecar", setup: (w: ReturnType<typeof world>) => w.answers.delete("198.18.0.2"), reason: "ScrapeFailed" },
    {
      what: "a sidecar refusing its config",
      setup: (w: ReturnType<typeof world>) => w.pushErrors.set("198.18.0.2", new SidecarError("http_401", "answered 401")),
      reason: "ConfigPushFailed",
    },
  ])("Ready False with the first problem's reason: $what → $reason", async ({ setup, reason }) => {
    const w = world({ spec: { limits: { maxConnections: 10 } } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    setup(w);
    await w.reconcile();
    expect(w.condition("Ready")).toMatchObject({ status: "False", reason });
  });

  it("writes unchanged counts again once a minute, so lastUpdateTime shows they are current", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    for (let i = 0; i < 11; i++) {
      w.advance(INTERVAL_MS);
      await w.reconcile();
    }
    expect(w.statusWrites()).toHaveLength(1);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.statusWrites()).toHaveLength(2);
    expect(w.policy.status?.lastUpdateTime).toBe(new Date(T0 + 60_000).toISOString());
  });
});

describe("Reconciler: pods that cannot start", () => {
  const waitingPod = (name: string, ip: string, waiting: { container: string; reason: string; message?: string }[], phase = "Pending"): PodLike => {
    const p = pod(name, ip, "n", false);
    p.status = { ...p.status, phase, waiting };
    return p;
  };

  it("a missing admin token Secret: Metered and Ready False PodsNotStarting, naming the pod, the Secret and the command that creates it", async () => {
    const secretMissing = { container: "connmeter", reason: "CreateContainerConfigError", message: 'secret "connmeter-admin-token" not found' };
    const w = world({ pods: [waitingPod("chat-a", "198.18.0.1", [secretMissing]), waitingPod("chat-b", "198.18.0.2", [secretMissing])] });
    await w.reconcile();
    const c = w.condition("Metered")!;
    expect(c).toMatchObject({ status: "False", reason: "PodsNotStarting" });
    expect(c.message).toContain('chat-a (connmeter: CreateContainerConfigError: secret "connmeter-admin-token" not found)');
    expect(c.message).toContain("kubectl -n shop create secret generic connmeter-admin-token");
    expect(w.condition("Ready")).toMatchObject({ status: "False", reason: "PodsNotStarting" });
  });

  it("an image that cannot be pulled: names the container and says how to get images onto the nodes", async () => {
    const w = world({ pods: [waitingPod("chat-a", "198.18.0.1", [{ container: "connmeter", reason: "ImagePullBackOff", message: 'Back-off pulling image "connmeter/sidecar:0.1.0"' }])] });
    await w.reconcile();
    const c = w.condition("Metered")!;
    expect(c.reason).toBe("PodsNotStarting");
    expect(c.message).toContain("ImagePullBackOff");
    expect(c.message).toContain("kind load docker-image");
  });

  it("a Running pod whose sidecar crash-loops: ScrapeFailed, with the logs command", async () => {
    const w = world({ pods: [pod("chat-a", "198.18.0.1", "n"), waitingPod("chat-b", "198.18.0.2", [{ container: "connmeter", reason: "CrashLoopBackOff" }], "Running")] });
    w.answers.set("198.18.0.1", sample(1));
    await w.reconcile();
    const c = w.condition("Metered")!;
    expect(c.reason).toBe("ScrapeFailed");
    expect(c.message).toContain("kubectl -n shop logs chat-b -c connmeter --previous");
  });
});

describe("Reconciler: stale pods", () => {
  it("keeps a stale pod's last counts for 3 intervals, then lists it as unknown, never as zero", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(7, 2));
    await w.reconcile();
    w.answers.set("198.18.0.2", new SidecarError("timeout", "no answer within 1666 ms"));
    for (let i = 1; i <= 3; i++) {
      w.advance(INTERVAL_MS);
      await w.reconcile();
      expect(w.policy.status).toMatchObject({ connections: 17, meteredPods: 1, stalePods: 1 });
      expect(w.policy.status?.pods?.[0]).toEqual({ name: "chat-b", node: "node-2", connections: 7, channels: 2, ready: true, stale: true });
    }
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.policy.status).toMatchObject({ connections: 10, meteredPods: 1, stalePods: 1 });
    expect(w.policy.status?.pods?.[0]).toEqual({ name: "chat-b", node: "node-2", ready: true, stale: true });
    expect(w.condition("Metered")?.message).toContain("lower bound");
  });

  it("turns Metered False with ScrapeFailed naming the pod and its error, with one ScrapeFailed event", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    const since = w.condition("Metered")!.lastTransitionTime;
    w.answers.set("198.18.0.2", new SidecarError("refused", "connect ECONNREFUSED 198.18.0.2:9090"));
    for (let i = 0; i < 3; i++) {
      w.advance(INTERVAL_MS);
      await w.reconcile();
    }
    const c = w.condition("Metered")!;
    expect(c).toMatchObject({ status: "False", reason: "ScrapeFailed" });
    expect(c.message).toContain("chat-b (connect ECONNREFUSED 198.18.0.2:9090)");
    expect(c.message).not.toContain("chat-a");
    expect(c.lastTransitionTime).not.toBe(since);
    expect(c.lastTransitionTime).toBe(new Date(T0 + INTERVAL_MS).toISOString());
    expect(w.events.filter((e) => e.reason === "ScrapeFailed")).toHaveLength(1);
    expect(w.events[0]).toMatchObject({ type: "Warning", regarding: { kind: "ConnectionPolicy", name: "chat-policy", namespace: NS, uid: "uid-1" } });
  });

  it("a pod that never answered is listed without counts, and scaling waits when no pod has counts", async () => {
    const w = world({ spec: { scaling: { minReplicas: 1, maxReplicas: 10, targetConnectionsPerPod: 1 } as never } });
    await w.reconcile();
    expect(w.policy.status?.pods).toEqual([
      { name: "chat-a", node: "node-1", ready: true, stale: true },
      { name: "chat-b", node: "node-2", ready: true, stale: true },
    ]);
    expect(w.condition("ScalingActive")).toMatchObject({ status: "False", reason: "NoPods" });
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([]);
  });
});

describe("Reconciler: target and HPA", () => {
  it("a missing target: TargetNotFound on Metered and ScalingActive, one event, no scrape", async () => {
    const w = world({ target: false });
    await w.reconcile();
    expect(w.condition("Metered")).toMatchObject({ status: "False", reason: "TargetNotFound" });
    expect(w.condition("ScalingActive")).toMatchObject({ status: "False", reason: "TargetNotFound" });
    expect(w.scrapes).toEqual([]);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.events.filter((e) => e.reason === "TargetNotFound")).toHaveLength(1);
  });

  it("an HPA on the same target blocks scaling: ScalingActive False HPAConflict and no scale write", async () => {
    const w = world({ hpa: true, replicas: 1, spec: { scaling: { minReplicas: 1, maxReplicas: 10, targetConnectionsPerPod: 10 } as never } });
    w.answers.set("198.18.0.1", sample(100));
    w.answers.set("198.18.0.2", sample(100));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([]);
    expect(w.condition("ScalingActive")).toMatchObject({ status: "False", reason: "HPAConflict" });
    expect(w.condition("ScalingActive")?.message).toContain("chat-hpa");
  });
});

describe("Reconciler: scaling", () => {
  const scaling = (over: Record<string, number | boolean> = {}) =>
    ({ minReplicas: 1, maxReplicas: 10, targetConnectionsPerPod: 100, scaleDownStabilizationSeconds: 0, ...over }) as never;

  it("scales up once through the scale subresource, with one ScaledUp event and lastScaleTime", async () => {
    const w = world({ replicas: 2, spec: { scaling: scaling() } });
    w.answers.set("198.18.0.1", sample(300));
    w.answers.set("198.18.0.2", sample(200));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 5 }]);
    expect(w.events.filter((e) => e.reason === "ScaledUp")).toHaveLength(1);
    expect(w.events.find((e) => e.reason === "ScaledUp")?.note).toContain("from 2 to 5");
    expect(w.policy.status).toMatchObject({ desiredReplicas: 5, lastScaleTime: new Date(T0).toISOString() });
    expect(w.condition("ScalingActive")).toMatchObject({ status: "True", reason: "ValidMetricFound" });
    // No deletion costs on a scale-up.
    expect(w.writes.filter((x) => x.op === "annotate")).toEqual([]);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toHaveLength(1);
    expect(w.events.filter((e) => e.reason === "ScaledUp")).toHaveLength(1);
    expect(w.policy.status?.lastScaleTime).toBe(new Date(T0).toISOString());
  });

  it("holds a surge to the HPA's default rate (4 pods or 100 % per 15 s), counting its own scales, and says so in ScalingLimited", async () => {
    const w = world({ replicas: 2, spec: { scaling: scaling({ maxReplicas: 30 }) } });
    w.answers.set("198.18.0.1", sample(1000));
    w.answers.set("198.18.0.2", sample(1000));
    await w.reconcile();
    const scales = () => w.writes.filter((x) => x.op === "scale").map((x) => (x as { replicas: number }).replicas);
    expect(scales()).toEqual([6]);
    expect(w.condition("ScalingLimited")).toMatchObject({ status: "True", reason: "ScaleUpLimit" });
    expect(w.condition("ScalingLimited")?.message).toContain("the desired count (20) rises faster than spec.scaling.scaleUpPolicies allow (4 pods per 15 s, 100 % per 15 s, select Max): 6 replicas for now");
    // Within the same 15 s the period still starts at 2: no further scale.
    w.advance(INTERVAL_MS);
    await w.reconcile();
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(scales()).toEqual([6]);
    // Past it, the next period starts at 6: 100 % allows 12.
    w.advance(INTERVAL_MS + 1);
    await w.reconcile();
    expect(scales()).toEqual([6, 12]);
  });

  it("before a scale-down, writes each pod's connections as its deletion cost, marked as ours, then the scale", async () => {
    const pods = [pod("chat-a", "198.18.0.1", "n"), pod("chat-b", "198.18.0.2", "n"), pod("chat-c", "198.18.0.3", "n")];
    const w = world({ replicas: 3, pods, spec: { scaling: scaling() } });
    w.answers.set("198.18.0.1", sample(40, 0, {}, 2));
    w.answers.set("198.18.0.2", sample(0));
    w.answers.set("198.18.0.3", sample(9));
    await w.reconcile();
    const i = w.writes.findIndex((x) => x.op === "scale");
    expect(w.writes[i]).toEqual({ op: "scale", kind: "Deployment", name: "chat", replicas: 1 });
    const costs = w.writes.slice(0, i).filter((x) => x.op === "annotate");
    expect(costs).toHaveLength(3);
    expect(Object.fromEntries(costs.map((c) => [c.pod, c.annotations]))).toEqual({
      "chat-a": { "controller.kubernetes.io/pod-deletion-cost": "42", "connmeter.io/pod-deletion-cost-by": "chat-policy" },
      "chat-b": { "controller.kubernetes.io/pod-deletion-cost": "0", "connmeter.io/pod-deletion-cost-by": "chat-policy" },
      "chat-c": { "controller.kubernetes.io/pod-deletion-cost": "9", "connmeter.io/pod-deletion-cost-by": "chat-policy" },
    });
    expect(w.writes.slice(i + 1).filter((x) => x.op === "annotate")).toEqual([]);
    expect(w.events.filter((e) => e.reason === "ScaledDown")).toHaveLength(1);
  });

  it("writes no deletion costs when connection-aware scale-down is off", async () => {
    const w = world({ replicas: 3, spec: { scaling: scaling({ connectionAwareScaleDown: false }) } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 1 }]);
    expect(w.writes.filter((x) => x.op === "annotate")).toEqual([]);
  });

  it("a policy new to this operator holds a scale-down for the whole down window", async () => {
    const w = world({ replicas: 4, spec: { scaling: scaling({ scaleDownStabilizationSeconds: 30 }) } });
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(10));
    for (let t = 0; t < 30_000; t += INTERVAL_MS) {
      await w.reconcile();
      w.advance(INTERVAL_MS);
    }
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([]);
    expect(w.condition("ScalingActive")?.message).toContain("held back");
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 1 }]);
  });

  it("scales a StatefulSet down without deletion costs (it removes its highest ordinal) and says so", async () => {
    const w = world({ replicas: 3, spec: { targetRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: "chat" }, scaling: scaling() } });
    w.caches.statefulSets.items.push(...w.caches.deployments.items.splice(0));
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "StatefulSet", name: "chat", replicas: 1 }]);
    expect(w.writes.filter((x) => x.op === "annotate")).toEqual([]);
    expect(w.condition("ScalingActive")?.message).toContain("highest ordinal");
  });

  it("scales down past a silent sidecar, counting its pod as at the target (3 idle pods, one frozen, minReplicas 2 → 2)", async () => {
    const pods = [pod("chat-a", "198.18.0.1", "n"), pod("chat-b", "198.18.0.2", "n"), pod("chat-c", "198.18.0.3", "n")];
    const w = world({ replicas: 3, pods, spec: { scaling: scaling({ minReplicas: 2 }) } });
    w.answers.set("198.18.0.1", sample(0));
    w.answers.set("198.18.0.2", sample(0));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 2 }]);
  });

  it("decides on a silent pod's last known counts while they are recent (3 intervals), not on zero", async () => {
    const w = world({ replicas: 3, pods: [pod("chat-a", "198.18.0.1", "n"), pod("chat-b", "198.18.0.2", "n"), pod("chat-c", "198.18.0.3", "n")], spec: { scaling: scaling() } });
    for (const ip of ["198.18.0.1", "198.18.0.2", "198.18.0.3"]) w.answers.set(ip, sample(90));
    await w.reconcile();
    w.answers.set("198.18.0.3", new SidecarError("timeout", "slow"));
    w.answers.set("198.18.0.1", sample(10));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    // 10 + 90 + 90 (last known) = 190 → 2 pods; on zero for the silent pod it would be 1.
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([{ op: "scale", kind: "Deployment", name: "chat", replicas: 2 }]);
  });
});

describe("Reconciler: budgets", () => {
  it("pushes every answering sidecar its share of the cluster cap, the pod limits and a TTL that outlasts a failover", async () => {
    const pods = [pod("chat-a", "198.18.0.1", "n"), pod("chat-b", "198.18.0.2", "n"), pod("chat-c", "198.18.0.3", "n")];
    const w = world({ pods, spec: { limits: { maxConnections: 100, maxConnectionsPerPod: 60, rejectAtPercent: 90 }, topics: [{ match: "room:*", maxChannels: 10 }, { match: "user:*" }] } });
    w.answers.set("198.18.0.1", sample(30, 4, { "room:1": 4 }));
    w.answers.set("198.18.0.2", sample(10, 1, { "room:2": 1 }));
    w.answers.set("198.18.0.3", sample(0));
    await w.reconcile();
    expect(w.pushes.map((p) => p.ip).sort()).toEqual(["198.18.0.1", "198.18.0.2", "198.18.0.3"]);
    for (const { config } of w.pushes) {
      // Twice (2 leases of 15 s + 30 s of API server outage + 2 intervals of 5 s): a successor pushes before anything lapses.
      expect(config).toMatchObject({ maxConnections: 60, rejectAtPercent: 90, ttlSeconds: 140 });
      expect(config.topics?.map((t) => t.match)).toEqual(["room:*", "user:*"]);
      expect(config.topics?.[1]).not.toHaveProperty("maxChannels");
    }
    const budget = (ip: string) => w.pushes.find((p) => p.ip === ip)!.config;
    expect(budget("198.18.0.1").connectionBudget).toBeGreaterThanOrEqual(30);
    expect(budget("198.18.0.2").connectionBudget).toBeGreaterThanOrEqual(10);
    expect(w.pushes.reduce((s, p) => s + (p.config.connectionBudget ?? 0), 0)).toBeLessThanOrEqual(100);
    expect(w.pushes.reduce((s, p) => s + (p.config.topics?.[0]?.maxChannels ?? 0), 0)).toBeLessThanOrEqual(10);
    expect(budget("198.18.0.1").topics?.[0]?.maxChannels).toBeGreaterThanOrEqual(4);
    expect(w.policy.status?.capacity).toEqual({ maxConnections: 100, connections: 40, usedPercent: 40 });
  });

  it("keeps a stale pod's budget reserved: nothing is pushed to it and the others' budgets leave room for it", async () => {
    const w = world({ spec: { limits: { maxConnections: 100 } } });
    w.answers.set("198.18.0.1", sample(20));
    w.answers.set("198.18.0.2", sample(20));
    await w.reconcile();
    const first = w.pushes.find((p) => p.ip === "198.18.0.2")!.config.connectionBudget!;
    w.pushes.length = 0;
    w.answers.set("198.18.0.2", new SidecarError("timeout", "slow"));
    w.answers.set("198.18.0.1", sample(35));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes.map((p) => p.ip)).toEqual(["198.18.0.1"]);
    expect(w.pushes[0]!.config.connectionBudget! + first).toBeLessThanOrEqual(100);
  });

  it("pushes again every interval to a sidecar that reports no config revision (older than HeldConfig)", async () => {
    const w = world({ spec: { limits: { maxConnections: 10 } } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes).toHaveLength(4);
    expect(w.pushes.every((p) => p.config.ttlSeconds === 140)).toBe(true);
  });

  it("at the cluster cap: AtCapacity True and one AtCapacity event", async () => {
    const w = world({ spec: { limits: { maxConnections: 20 } } });
    w.answers.set("198.18.0.1", sample(12));
    w.answers.set("198.18.0.2", sample(8));
    await w.reconcile();
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.condition("AtCapacity")).toMatchObject({ status: "True", reason: "AtCapacity" });
    expect(w.events.filter((e) => e.reason === "AtCapacity")).toHaveLength(1);
    expect(w.pushes.slice(0, 2).reduce((s, p) => s + (p.config.connectionBudget ?? 0), 0)).toBeLessThanOrEqual(20);
  });

  it("forget() lifts the budgets of every pod it pushed to and removes the deletion costs it wrote", async () => {
    const w = world({ replicas: 3, spec: { limits: { maxConnections: 50 }, scaling: { minReplicas: 1, maxReplicas: 5, targetConnectionsPerPod: 100, scaleDownStabilizationSeconds: 0 } as never } });
    w.answers.set("198.18.0.1", sample(3));
    w.answers.set("198.18.0.2", sample(4));
    await w.reconcile();
    expect(w.writes.filter((x) => x.op === "annotate")).toHaveLength(2);
    await w.reconciler.forget(KEY, w.policy);
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    const removals = w.writes.filter((x) => x.op === "annotate").slice(2);
    expect(removals.map((r) => r.annotations)).toEqual([
      { "controller.kubernetes.io/pod-deletion-cost": null, "connmeter.io/pod-deletion-cost-by": null },
      { "controller.kubernetes.io/pod-deletion-cost": null, "connmeter.io/pod-deletion-cost-by": null },
    ]);
    // Forgotten: a second forget has nothing to lift.
    w.resets.length = 0;
    await w.reconciler.forget(KEY, w.policy);
    expect(w.resets).toEqual([]);
  });

  it("a policy being deleted is cleaned up by reconcile and not requeued: budgets lifted, no status written", async () => {
    const w = world({ spec: { limits: { maxConnections: 50 } } });
    w.answers.set("198.18.0.1", sample(3));
    w.answers.set("198.18.0.2", sample(4));
    await w.reconcile();
    const writes = w.statusWrites().length;
    w.policy.metadata.deletionTimestamp = new Date(T0).toISOString();
    w.advance(INTERVAL_MS);
    expect((await w.reconcile()).requeueAfterMs).toBeUndefined();
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(w.statusWrites()).toHaveLength(writes);
  });
});

describe("Reconciler: unchanged configs are not pushed again", () => {
  /** Sidecars that answer revisions and report the one in force, as sidecar/admin/pushed-config.ts does. */
  function heldWorld() {
    const w = world({ spec: { limits: { maxConnections: 100 } } });
    const held = new Map<string, { source: "flags" | "pushed"; revision: string }>();
    let n = 0;
    const answer = (ip: string, connections: number) => w.answers.set(ip, { ...sample(connections), config: held.get(ip) ?? { source: "flags", revision: `${ip}.0` } });
    const revisionOnPush = (ip: string) => {
      const revision = `${ip}.${++n}`;
      w.revisions.set(ip, revision);
      held.set(ip, { source: "pushed", revision });
    };
    return { w, held, answer, revisionOnPush };
  }

  /** One interval from sidecars reporting their flags; answers the IPs pushed to. */
  async function firstCycle(h: ReturnType<typeof heldWorld>, counts: [number, number]) {
    h.answer("198.18.0.1", counts[0]);
    h.answer("198.18.0.2", counts[1]);
    // The revision each PUT will answer (the sidecar reports it once told to below).
    h.revisionOnPush("198.18.0.1");
    h.revisionOnPush("198.18.0.2");
    await h.w.reconcile();
    h.w.advance(INTERVAL_MS);
    return h.w.pushes.map((p) => p.ip).sort();
  }

  it("a sidecar that reports the revision of the last push, with counts that moved a little, is not pushed until the refresh is due", async () => {
    const h = heldWorld();
    h.answer("198.18.0.1", 10);
    h.answer("198.18.0.2", 10);
    h.revisionOnPush("198.18.0.1");
    h.revisionOnPush("198.18.0.2");
    await h.w.reconcile();
    expect(h.w.pushes).toHaveLength(2);
    const first = new Map(h.w.pushes.map((p) => [p.ip, p.config.connectionBudget!]));
    // The sidecars now report what was pushed; counts wobble by one or two.
    const reported = new Map([...first.keys()].map((ip) => [ip, { source: "pushed" as const, revision: h.w.revisions.get(ip)! }]));
    let pushedAgainAt = -1;
    for (let i = 1; i <= 20; i++) {
      h.w.advance(INTERVAL_MS);
      for (const [ip, c] of [["198.18.0.1", 10 + (i % 3)], ["198.18.0.2", 11 - (i % 2)]] as const) h.w.answers.set(ip, { ...sample(c), config: reported.get(ip)! });
      const before = h.w.pushes.length;
      await h.w.reconcile();
      if (h.w.pushes.length > before) {
        pushedAgainAt = i;
        break;
      }
    }
    // Refreshed once the first pod's refresh is due (between half and all of TTL 140 − gap 70 − 1 interval = 65 s).
    const due = Math.min(refreshDueMs("chat-a", INTERVAL_MS), refreshDueMs("chat-b", INTERVAL_MS));
    expect(pushedAgainAt).toBe(Math.ceil(due / INTERVAL_MS));
    expect(pushedAgainAt).toBeGreaterThanOrEqual(6);
    const again = h.w.pushes.slice(2);
    expect(again.length).toBeGreaterThanOrEqual(1);
    for (const p of again) expect(p.config.connectionBudget).toBe(first.get(p.ip));
  });

  it("pushes at once to a sidecar that restarted (its revision changed), and to one whose budget must change", async () => {
    const h = heldWorld();
    expect(await firstCycle(h, [10, 10])).toEqual(["198.18.0.1", "198.18.0.2"]);
    // Both report what they got: nothing to push.
    h.held.set("198.18.0.1", { source: "pushed", revision: h.w.revisions.get("198.18.0.1")! });
    h.held.set("198.18.0.2", { source: "pushed", revision: h.w.revisions.get("198.18.0.2")! });
    h.answer("198.18.0.1", 10);
    h.answer("198.18.0.2", 10);
    let before = h.w.pushes.length;
    await h.w.reconcile();
    expect(h.w.pushes.length - before).toBe(0);
    // chat-a's sidecar restarted in place (same IP): back on its flags, a new revision.
    h.w.advance(INTERVAL_MS);
    h.held.set("198.18.0.1", { source: "flags", revision: "restarted.0" });
    h.answer("198.18.0.1", 0);
    // chat-b filled up: its kept budget leaves it too little of the fresh headroom.
    h.answer("198.18.0.2", 60);
    before = h.w.pushes.length;
    await h.w.reconcile();
    expect(h.w.pushes.slice(before).map((p) => p.ip).sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    const budgets = h.w.pushes.slice(before).reduce((s, p) => s + (p.config.connectionBudget ?? 0), 0);
    expect(budgets).toBeLessThanOrEqual(100);
  });

  it("a failed push is retried at the next interval even if the config did not change", async () => {
    const h = heldWorld();
    h.w.pushErrors.set("198.18.0.2", new SidecarError("http_401", "refused"));
    expect(await firstCycle(h, [10, 10])).toEqual(["198.18.0.1"]);
    h.w.pushErrors.delete("198.18.0.2");
    h.held.set("198.18.0.1", { source: "pushed", revision: h.w.revisions.get("198.18.0.1")! });
    h.answer("198.18.0.1", 10);
    h.answer("198.18.0.2", 10);
    const before = h.w.pushes.length;
    await h.w.reconcile();
    expect(h.w.pushes.slice(before).map((p) => p.ip)).toContain("198.18.0.2");
  });
});

describe("Reconciler: the cluster cap under faults", () => {
  const three = () => [pod("chat-a", "198.18.0.1", "n"), pod("chat-b", "198.18.0.2", "n"), pod("chat-c", "198.18.0.3", "n")];
  const budgetOf = (w: ReturnType<typeof world>, ip: string) => w.pushes.filter((p) => p.ip === ip).at(-1)?.config.connectionBudget;

  it("a pod whose PUT /config is refused keeps its budget reserved, and LimitsApplied says which pod, the status and the fix", async () => {
    const w = world({ spec: { limits: { maxConnections: 100 } } });
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(10));
    await w.reconcile();
    expect(w.condition("LimitsApplied")).toMatchObject({ status: "True", reason: "ConfigAccepted" });
    const heldByB = budgetOf(w, "198.18.0.2")!;
    w.pushErrors.set("198.18.0.2", new SidecarError("http_401", "PUT http://198.18.0.2:9090/config answered 401: wrong token"));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    w.pushes.length = 0;
    w.answers.set("198.18.0.1", sample(40));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    // chat-b still enforces what it accepted last; chat-a's new budget leaves room for it.
    expect(budgetOf(w, "198.18.0.1")! + heldByB).toBeLessThanOrEqual(100);
    const c = w.condition("LimitsApplied")!;
    expect(c).toMatchObject({ status: "False", reason: "ConfigPushFailed" });
    expect(c.message).toContain("chat-b (http_401");
    expect(c.message).toContain("Secret connmeter-admin-token in namespace shop");
    expect(c.message).toContain("rollout restart deployment/chat");
    expect(w.events.filter((e) => e.reason === "ConfigPushFailed")).toHaveLength(1);
  });

  it("a refusing pod is tried again with no more than it holds, and counts as configured once it accepts", async () => {
    const w = world({ spec: { limits: { maxConnections: 100 } } });
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(7));
    w.pushErrors.set("198.18.0.2", new SidecarError("timeout", "no answer"));
    await w.reconcile();
    w.pushErrors.delete("198.18.0.2");
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(budgetOf(w, "198.18.0.2")).toBe(7);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.condition("LimitsApplied")).toMatchObject({ status: "True" });
    expect(budgetOf(w, "198.18.0.2")).toBeGreaterThan(7);
  });

  it("a new pod: the others' budgets are lowered first, then the new pod gets its share, and the sum never exceeds the cap", async () => {
    const w = world({ spec: { limits: { maxConnections: 60 } } });
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(10));
    await w.reconcile();
    w.pushes.length = 0;
    w.caches.pods.items.push(pod("chat-c", "198.18.0.3", "n"));
    w.answers.set("198.18.0.3", sample(0));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes.map((p) => p.ip)).toEqual(["198.18.0.1", "198.18.0.2", "198.18.0.3"]);
    // After each push, the budgets in force sum to at most the cap.
    const inForce = new Map([["198.18.0.1", 30], ["198.18.0.2", 30]]);
    for (const p of w.pushes) {
      inForce.set(p.ip, p.config.connectionBudget!);
      expect([...inForce.values()].reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(60);
    }
  });

  it("when lowering a budget fails, nothing is raised that interval and a pod with no budget yet gets none", async () => {
    const w = world({ spec: { limits: { maxConnections: 60 } } });
    w.answers.set("198.18.0.1", sample(10));
    w.answers.set("198.18.0.2", sample(10));
    await w.reconcile();
    w.pushes.length = 0;
    w.caches.pods.items.push(pod("chat-c", "198.18.0.3", "n"));
    w.answers.set("198.18.0.3", sample(0));
    w.pushErrors.set("198.18.0.2", new SidecarError("timeout", "no answer"));
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes.map((p) => p.ip)).toEqual(["198.18.0.1"]);
    // The next interval splits with chat-b reserved at the 30 it still enforces.
    w.pushes.length = 0;
    w.advance(INTERVAL_MS);
    await w.reconcile();
    const sum = (budgetOf(w, "198.18.0.1") ?? 0) + (budgetOf(w, "198.18.0.3") ?? 0) + 30;
    expect(sum).toBeLessThanOrEqual(60);
    expect(budgetOf(w, "198.18.0.3")).toBeGreaterThan(0);
  });

  it("a pod being deleted keeps what it holds and gets no share of the headroom", async () => {
    const pods = three();
    pods[2]!.metadata!.deletionTimestamp = new Date(T0).toISOString();
    const w = world({ pods, spec: { limits: { maxConnections: 100 } } });
    for (const ip of ["198.18.0.1", "198.18.0.2", "198.18.0.3"]) w.answers.set(ip, sample(10));
    await w.reconcile();
    expect(budgetOf(w, "198.18.0.3")).toBe(10);
    expect(budgetOf(w, "198.18.0.1")! + budgetOf(w, "198.18.0.2")!).toBe(90);
  });
});

describe("Reconciler: status content a sidecar cannot break", () => {
  it("a 300-character topic is listed under a name within the CRD's 253, the same every interval, apart from another long one", async () => {
    const long1 = `room:${"x".repeat(295)}`;
    const long2 = `room:${"x".repeat(294)}y`;
    const w = world();
    w.answers.set("198.18.0.1", sample(2, 2, { [long1]: 1, [long2]: 1 }));
    w.answers.set("198.18.0.2", sample(1, 1, { [long1]: 1 }));
    await w.reconcile();
    const topics = w.policy.status!.topics!;
    expect(topics).toHaveLength(2);
    for (const t of topics) expect([...t.name].length).toBeLessThanOrEqual(253);
    expect(topics.map((t) => t.channels).sort()).toEqual([1, 2]);
    const names = topics.map((t) => t.name);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.policy.status!.topics!.map((t) => t.name)).toEqual(names);
  });

  it("counts that are not whole numbers never reach the status", async () => {
    const w = world();
    w.answers.set("198.18.0.1", { connections: 2.5, channels: 1e300, longpoll: -3, topics: { lobby: 0.5, "room:1": Number.NaN } });
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    const s = w.policy.status!;
    for (const n of [s.connections, s.channels, s.longpoll, ...s.topics!.map((t) => t.channels), ...s.pods!.map((p) => p.connections ?? 0)]) {
      expect(Number.isSafeInteger(n)).toBe(true);
    }
    expect(s.connections).toBe(3);
  });

  it("a refused status write does not stop the budgets: pushed again next interval, told once, tried again", async () => {
    const w = world({ spec: { limits: { maxConnections: 10 } } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    w.statusFailure.error = new Error("ConnectionPolicy.connmeter.io \"chat-policy\" is invalid: status.topics[1].name: Too long");
    const first = await w.reconcile();
    expect(first.requeueAfterMs).toBe(INTERVAL_MS);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes).toHaveLength(4);
    expect(w.events.filter((e) => e.reason === "StatusWriteFailed")).toHaveLength(1);
    w.statusFailure.error = undefined;
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.policy.status?.connections).toBe(2);
  });
});

describe("Reconciler: two policies on one workload", () => {
  it("lets only the older policy push budgets and scale; the newer one meters and says which policy acts", async () => {
    const w = world({ spec: { limits: { maxConnections: 100 }, scaling: { minReplicas: 1, maxReplicas: 5, targetConnectionsPerPod: 1 } as never } });
    w.caches.policies.items[0]!.metadata.creationTimestamp = "2026-03-01T11:00:00Z";
    const newer: ConnectionPolicy = {
      metadata: { name: "chat-policy-2", namespace: NS, uid: "uid-2", generation: 1, creationTimestamp: "2026-03-01T11:30:00Z" },
      spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: 5, limits: { maxConnections: 1 } },
    };
    w.caches.policies.items.push(newer);
    w.answers.set("198.18.0.1", sample(3));
    w.answers.set("198.18.0.2", sample(3));
    await w.reconciler.reconcile(`${NS}/chat-policy-2`);
    expect(w.pushes).toEqual([]);
    expect(w.writes.filter((x) => x.op === "scale")).toEqual([]);
    const conflicted = w.caches.policies.items[1]!.status!;
    expect(conflicted.connections).toBe(6);
    expect(conflicted.conditions?.find((c) => c.type === "ScalingActive")).toMatchObject({ status: "False", reason: "PolicyConflict" });
    expect(conflicted.conditions?.find((c) => c.type === "ScalingActive")?.message).toContain("chat-policy ");

    await w.reconcile();
    expect(w.pushes.map((p) => p.config.connectionBudget).reduce((a, b) => a! + b!, 0)).toBeLessThanOrEqual(100);
    expect(w.pushes).toHaveLength(2);
  });

  it("deleting either of them lifts no budget of the shared pods: the other policy's stay in force (else the pods run uncapped until its next push)", async () => {
    const w = world({ spec: { limits: { maxConnections: 100 } } });
    w.caches.policies.items[0]!.metadata.creationTimestamp = "2026-03-01T11:00:00Z";
    w.caches.policies.items.push({
      metadata: { name: "chat-policy-2", namespace: NS, uid: "uid-2", generation: 1, resourceVersion: "7", creationTimestamp: "2026-03-01T11:30:00Z" },
      spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: 5, limits: { maxConnections: 1 } },
    });
    w.answers.set("198.18.0.1", sample(3));
    w.answers.set("198.18.0.2", sample(3));
    await w.reconcile();
    await w.reconciler.reconcile(`${NS}/chat-policy-2`);
    const newer = w.caches.policies.items.find((p) => p.metadata.name === "chat-policy-2")!;
    newer.metadata.deletionTimestamp = new Date(T0).toISOString();
    newer.metadata.finalizers = ["connmeter.io/cleanup"];
    await w.reconciler.reconcile(`${NS}/chat-policy-2`);
    expect(w.resets).toEqual([]);
    // The older one goes while the newer still exists: the newer takes over and pushes its own.
    w.caches.policies.items.splice(w.caches.policies.items.indexOf(newer), 1, { ...newer, metadata: { ...newer.metadata, deletionTimestamp: undefined, finalizers: [] } });
    const older = w.policy;
    w.caches.policies.items.splice(0, 1);
    await w.reconciler.forget(KEY, older);
    expect(w.resets).toEqual([]);
  });
});

describe("Reconciler: topic groups", () => {
  it("pushes no topics when the spec has none (the sidecar keeps its own --topic-group), and lifts pushed groups the spec no longer has", async () => {
    const w = world({ spec: { topics: [{ match: "room:*" }] } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    expect(w.pushes.every((p) => p.config.topics?.[0]?.match === "room:*")).toBe(true);
    w.pushes.length = 0;
    const p = w.caches.policies.items[0]!;
    w.caches.policies.items[0] = { ...p, metadata: { ...p.metadata, generation: 2 }, spec: { ...p.spec, topics: [] } };
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.pushes).toHaveLength(2);
    expect(w.pushes.every((x) => x.config.topics === undefined)).toBe(true);
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
  });
});

describe("Reconciler: per-policy gauges", () => {
  it("exports connections, replicas, desired replicas, maxReplicas and the cluster cap, and drops them when the policy goes", async () => {
    const metrics = new OperatorMetrics();
    const w = world({ spec: { limits: { maxConnections: 40 }, scaling: { minReplicas: 1, maxReplicas: 7, targetConnectionsPerPod: 100 } as never } });
    const reconciler = new Reconciler({
      caches: w.caches, metrics, clock: () => T0, log: () => undefined, events: { record: () => undefined },
      writer: {
        patchPolicyStatus: async () => undefined, patchPolicyFinalizers: async () => undefined, getScale: async () => undefined,
        patchScale: async () => undefined, patchPodAnnotations: async () => undefined, getDeployment: async () => undefined, pauseDeployment: async () => undefined,
      },
      sidecars: { stats: async () => sample(3), pushConfig: async () => undefined, resetConfig: async () => undefined },
    });
    await reconciler.reconcile(KEY);
    const text = await metrics.registry.metrics();
    const labels = `namespace="${NS}",policy="chat-policy"`;
    expect(text).toContain(`connmeter_policy_connections{${labels}} 6`);
    expect(text).toContain(`connmeter_policy_max_replicas{${labels}} 7`);
    expect(text).toContain(`connmeter_policy_max_connections{${labels}} 40`);
    expect(text).toContain(`connmeter_policy_replicas{${labels}} 2`);
    await reconciler.forget(KEY);
    expect(await metrics.registry.metrics()).not.toContain(`policy="chat-policy"`);
  });
});

describe("Reconciler: a failed scale write", () => {
  it("keeps the status following the counts, says why in ScalingActive with one FailedScale event, and retries next interval", async () => {
    const w = world({ replicas: 1, spec: { scaling: { minReplicas: 1, maxReplicas: 5, targetConnectionsPerPod: 2 } as never } });
    let forbidden = true;
    const patchScale = w.reconciler["deps"].writer.patchScale;
    w.reconciler["deps"].writer.patchScale = async (...args) => {
      if (forbidden) throw new Error('deployments.apps "chat" is forbidden: cannot patch resource "deployments/scale"');
      return patchScale(...args);
    };
    w.answers.set("198.18.0.1", sample(6));
    w.answers.set("198.18.0.2", sample(2));
    await w.reconcile();
    expect(w.policy.status?.connections).toBe(8);
    expect(w.condition("ScalingActive")).toMatchObject({ status: "False", reason: "FailedUpdateScale" });
    expect(w.condition("ScalingActive")!.message).toContain("forbidden");
    w.advance(INTERVAL_MS);
    w.answers.set("198.18.0.1", sample(7));
    await w.reconcile();
    expect(w.policy.status?.connections).toBe(9);
    expect(w.events.filter((e) => e.reason === "FailedScale")).toHaveLength(1);
    forbidden = false;
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.deployment.spec?.replicas).toBe(5);
    expect(w.condition("ScalingActive")).toMatchObject({ status: "True", reason: "ValidMetricFound" });
  });
});

// --- spec.occupancy (issue 17) ---
describe("Reconciler: occupancy", () => {
  it("pushes spec.occupancy with this scrape's exposed counts to every answering sidecar, and lifts it once removed", async () => {
    const w = world({ spec: { occupancy: { expose: ["room:*"], totals: true } } });
    w.answers.set("198.18.0.1", { ...sample(2, 3, { "room:1": 3 }), occupancy: { "room:*": 3, "room:1": 3 } });
    w.answers.set("198.18.0.2", { ...sample(1, 1, { "room:2": 1 }), occupancy: { "room:*": 1, "room:2": 1 } });
    await w.reconcile();
    expect(w.pushes).toHaveLength(2);
    for (const { config } of w.pushes) {
      expect(config.occupancy).toMatchObject({
        expose: ["room:*"], totals: true, intervalSeconds: INTERVAL_MS / 1000,
        snapshot: { at: new Date(T0).toISOString(), total: { connections: 3, channels: 4 }, counts: { "room:*": 4, "room:1": 3, "room:2": 1 } },
      });
    }
    expect(w.resets).toEqual([]);
    // Removed from the spec: the next push goes after a DELETE /config, so the sidecars stop serving it.
    w.caches.policies.items[0] = { ...w.policy, metadata: { ...w.policy.metadata, generation: 2 }, spec: { ...w.policy.spec, occupancy: undefined } };
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(w.pushes.slice(2).every((p) => p.config.occupancy === undefined)).toBe(true);
  });

  it("pushes no occupancy field to a policy without spec.occupancy (sidecars from before it refuse unknown fields)", async () => {
    const w = world();
    w.answers.set("198.18.0.1", sample(1));
    await w.reconcile();
    expect(w.pushes[0]!.config).not.toHaveProperty("occupancy");
  });
});
// --- end spec.occupancy ---
describe("Reconciler: status.usage (issue 18)", () => {
  const usage = (since: string, connectionSeconds: number, channelSeconds: Record<string, number> = {}) => ({ since, connectionSeconds, channelSeconds });
  const BEFORE = "2026-03-01T11:00:00.000Z";

  it("sums the sidecars' increases into status.usage without a status write of its own, and goes on from it after an operator restart", async () => {
    const w = world({ spec: { topics: [{ match: "room:*" }] } });
    w.answers.set("198.18.0.1", { ...sample(2, 1, { "room:*": 1 }), usage: usage(BEFORE, 1000, { "room:*": 500 }) });
    w.answers.set("198.18.0.2", { ...sample(3), usage: usage(BEFORE, 2000) });
    await w.reconcile();
    expect(w.policy.status!.usage).toMatchObject({ period: "2026-03-01", connectionSeconds: 0, peakConnections: 5 });
    const writes = w.statusWrites().length;
    w.advance(INTERVAL_MS);
    w.answers.set("198.18.0.1", { ...sample(2, 1, { "room:*": 1 }), usage: usage(BEFORE, 1010, { "room:*": 505 }) });
    w.answers.set("198.18.0.2", { ...sample(3), usage: usage(BEFORE, 2015) });
    await w.reconcile();
    expect(w.statusWrites()).toHaveLength(writes); // only the usage grew: it waits for the heartbeat
    w.advance(60_000);
    // chat-b's sidecar restarted: its counter began again at 0
    w.answers.set("198.18.0.2", { ...sample(3), usage: usage(new Date(T0 + 30_000).toISOString(), 40) });
    await w.reconcile();
    expect(w.policy.status!.usage).toMatchObject({ connectionSeconds: 10 + 15 + 40, groups: [{ name: "room:*", channelSeconds: 5 }] });

    // A new operator (restart or failover) reads the written usage back and adds what follows.
    const after = world({ spec: { topics: [{ match: "room:*" }] } });
    after.caches.policies.items[0] = { ...after.policy, status: structuredClone(w.policy.status!) };
    after.advance(70_000);
    after.answers.set("198.18.0.1", { ...sample(2), usage: usage(BEFORE, 1100, { "room:*": 550 }) });
    await after.reconcile();
    after.advance(60_000);
    after.answers.set("198.18.0.1", { ...sample(2), usage: usage(BEFORE, 1160, { "room:*": 580 }) });
    await after.reconcile();
    expect(after.policy.status!.usage).toMatchObject({ connectionSeconds: 65 + 60, groups: [{ name: "room:*", channelSeconds: 35 }] });
  });
});

describe("Reconciler: join buckets from spec.limits (issue 18)", () => {
  it("pushes them to every sidecar with the policy's name, and resets a sidecar to its flags when the spec drops them", async () => {
    const w = world({ spec: { limits: { joinRatePerSocket: 5, joinBurstPerSocket: 10, joinRatePerPod: 200 } } });
    w.answers.set("198.18.0.1", sample(1));
    w.answers.set("198.18.0.2", sample(1));
    await w.reconcile();
    for (const p of w.pushes) expect(p.config).toMatchObject({ policy: "chat-policy", joinRatePerSecond: 5, joinBurst: 10, podJoinRatePerSecond: 200 });
    expect(w.pushes.map((p) => p.config.podJoinBurst)).toEqual([undefined, undefined]);
    w.caches.policies.items[0] = { ...w.policy, metadata: { ...w.policy.metadata, generation: 2 }, spec: { ...w.policy.spec, limits: {} } };
    w.pushes.length = 0;
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]);
    expect(w.pushes.every((p) => p.config.joinRatePerSecond === undefined)).toBe(true);
  });
});

describe("Reconciler: spec.floodProtection (issue 18)", () => {
  it("sets FloodDetected with the numbers, records an Event, throttles every sidecar, and lifts it after the cooldown", async () => {
    const w = world({ spec: { floodProtection: { spikeFactor: 10, minRatePerSecond: 20, cooldownSeconds: 30, action: "throttle" } } });
    const since = "2026-03-01T11:00:00.000Z";
    let joins = 0;
    const answer = () => {
      for (const ip of ["198.18.0.1", "198.18.0.2"]) {
        w.answers.set(ip, { ...sample(1), usage: { since, connectionSeconds: 0, channelSeconds: {} }, attempts: { upgrades: 0, joins } });
      }
    };
    const step = async (joinsPerPodPerStep: number) => {
      joins += joinsPerPodPerStep;
      answer();
      w.advance(INTERVAL_MS);
      await w.reconcile();
    };
    answer();
    await w.reconcile();
    expect(w.condition("FloodDetected")).toMatchObject({ status: "Unknown", reason: "CollectingBaseline" });
    for (let i = 0; i < 75; i++) await step(25); // 10 joins/s cluster-wide for 6+ minutes
    expect(w.condition("FloodDetected")).toMatchObject({ status: "False", reason: "RateNormal" });
    for (let i = 0; i < 4; i++) await step(2500); // 1000 joins/s
    expect(w.condition("FloodDetected")).toMatchObject({ status: "True", reason: "JoinSpike" });
    expect(w.condition("FloodDetected")!.message).toMatch(/threshold 100\/s .*Throttling every pod to 10 upgrades\/s and 50 joins\/s/);
    expect(w.events.filter((e) => e.reason === "FloodDetected")).toHaveLength(1);
    expect(w.pushes.at(-1)!.config).toMatchObject({ upgradeRatePerSecond: 10, upgradeBurst: 10, podJoinRatePerSecond: 50, podJoinBurst: 50 });
    expect(w.condition("Ready")).toMatchObject({ status: "True" }); // a flood is not the policy's own failure
    w.resets.length = 0;
    for (let i = 0; i < 20; i++) await step(25); // back to normal: a minute to fall, then the 30 s cooldown
    expect(w.condition("FloodDetected")).toMatchObject({ status: "False", reason: "RateNormal" });
    expect(w.events.filter((e) => e.reason === "FloodCleared")).toHaveLength(1);
    expect(w.resets.sort()).toEqual(["198.18.0.1", "198.18.0.2"]); // the throttle's buckets lifted
    expect(w.pushes.at(-1)!.config.upgradeRatePerSecond).toBeUndefined();
  });
});

describe("Reconciler: spec.rolloutGuard (issue 18)", () => {
  it("shows the churn of a rollout's new pods beside the old in status.rollout, and turns RolloutChurn True with an Event when the new pods drop clients", async () => {
    const labelled = (name: string, ip: string, hash: string) => {
      const p = pod(name, ip, "node-1");
      p.metadata!.labels = { app: "chat", "pod-template-hash": hash };
      return p;
    };
    const w = world({ pods: [labelled("chat-a", "198.18.0.1", "old1")], spec: { rolloutGuard: { maxChurnRatio: 2, minConnectionMinutes: 10, minJoins: 1000 } } });
    const counters = new Map<string, { cs: number; drops: number }>([["198.18.0.1", { cs: 0, drops: 0 }], ["198.18.0.2", { cs: 0, drops: 0 }]]);
    const answer = (ip: string, connections: number, dropsPerStep: number) => {
      const c = counters.get(ip)!;
      c.cs += connections * (INTERVAL_MS / 1000);
      c.drops += dropsPerStep;
      w.answers.set(ip, { ...sample(connections), usage: { since: "2026-03-01T11:00:00.000Z", connectionSeconds: c.cs, channelSeconds: {} }, attempts: { upgrades: 0, joins: 0, joinErrors: 0, disconnects: c.drops, leaves: 0 } });
    };
    answer("198.18.0.1", 60, 0);
    await w.reconcile();
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "False", reason: "NoRollout" });
    w.caches.pods.items.push(labelled("chat-b", "198.18.0.2", "new2"));
    for (let i = 0; i < 30; i++) {
      answer("198.18.0.1", 60, i % 6 === 0 ? 1 : 0); // about 0.03 per connection-minute
      answer("198.18.0.2", 60, 3); // about 0.6 per connection-minute
      w.advance(INTERVAL_MS);
      await w.reconcile();
    }
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "True", reason: "ChurnAboveOld" });
    expect(w.policy.status!.rollout).toMatchObject({ new: { revisions: ["new2"], pods: 1 }, old: { revisions: ["old1"], pods: 1 } });
    const events = w.events.filter((e) => e.reason === "RolloutChurn");
    expect(events).toHaveLength(1);
    expect(events[0]!.note).toMatch(/kubectl rollout undo deployment\/chat -n shop/);
    // the old pods are gone: the rollout is over
    w.caches.pods.items.splice(0, 1);
    answer("198.18.0.2", 60, 0);
    w.advance(INTERVAL_MS);
    await w.reconcile();
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "False", reason: "NoRollout" });
    w.advance(60_000);
    await w.reconcile();
    expect(w.policy.status!.rollout).toBeUndefined();
  });

  /** A rollout whose new pod refuses every join while the old one accepts them, judged after `steps` scrapes. */
  async function churningRollout(spec: Partial<ConnectionPolicy["spec"]>, steps = 4) {
    const labelled = (name: string, ip: string, hash: string) => {
      const p = pod(name, ip, "node-1");
      p.metadata!.labels = { app: "chat", "pod-template-hash": hash };
      return p;
    };
    const w = world({ pods: [labelled("chat-a", "198.18.0.1", "old1")], spec });
    if (spec.targetRef?.kind === "StatefulSet") w.caches.statefulSets.items.push(w.deployment);
    const joins = new Map<string, { joins: number; errors: number }>([["198.18.0.1", { joins: 0, errors: 0 }], ["198.18.0.2", { joins: 0, errors: 0 }]]);
    const answer = (ip: string, errorsToo: boolean) => {
      const c = joins.get(ip)!;
      c.joins += 10;
      if (errorsToo) c.errors += 10;
      w.answers.set(ip, { ...sample(1), usage: { since: "2026-03-01T11:00:00.000Z", connectionSeconds: 0, channelSeconds: {} }, attempts: { upgrades: 0, joins: c.joins, joinErrors: c.errors, disconnects: 0, leaves: 0 } });
    };
    const step = async (newPodFails = false) => {
      answer("198.18.0.1", false);
      answer("198.18.0.2", true);
      if (newPodFails) w.answers.set("198.18.0.2", new SidecarError("refused", "connect ECONNREFUSED 198.18.0.2"));
      w.advance(INTERVAL_MS);
      await w.reconcile();
    };
    answer("198.18.0.1", false);
    await w.reconcile();
    w.caches.pods.items.push(labelled("chat-b", "198.18.0.2", "new2"));
    for (let i = 0; i < steps; i++) await step();
    return { w, step };
  }
  const PAUSE = { rolloutGuard: { maxChurnRatio: 2, minConnectionMinutes: 1000, minJoins: 20, action: "pause" as const } };

  it("action pause: pauses the Deployment once, with the resourceVersion it read, an Event and a condition saying how to resume or roll back", async () => {
    const { w, step } = await churningRollout(PAUSE);
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "True", reason: "ChurnAboveOld" });
    expect(w.writes.filter((x) => x.op === "pause")).toEqual([{ op: "pause", name: "chat", resourceVersion: "10", outcome: "ok" }]);
    expect(w.deployment.spec!.paused).toBe(true);
    expect(w.condition("RolloutChurn")!.message).toMatch(/connmeter paused Deployment chat \(spec.paused: true\) for revision new2.*kubectl rollout resume deployment\/chat -n shop.*kubectl rollout undo deployment\/chat -n shop/);
    expect(w.policy.status!.rollout).toMatchObject({ pausedRevision: "new2", pausedAt: new Date(T0 + 3 * INTERVAL_MS).toISOString() });
    const paused = w.events.filter((e) => e.reason === "RolloutPaused");
    expect(paused).toHaveLength(1);
    expect(paused[0]!.note).toMatch(/Paused Deployment chat .* new2: new pods refuse 1\.0000 of joins/);

    // The user resumes the same revision: not paused again, and the condition says so.
    w.deployment.spec!.paused = false;
    w.served.paused = false;
    for (let i = 0; i < 4; i++) await step();
    expect(w.writes.filter((x) => x.op === "pause")).toHaveLength(1);
    expect(w.deployment.spec!.paused).toBe(false);
    expect(w.condition("RolloutChurn")!.message).toMatch(/resumed since, and connmeter does not pause this revision again/);
    expect(w.events.filter((e) => e.reason === "RolloutPaused")).toHaveLength(1);

    // A failed scrape of the new pod hides its revision once; judged again afterwards, it is still not paused twice.
    await step(true);
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "False", reason: "NoRollout" });
    for (let i = 0; i < 5; i++) await step();
    expect(w.condition("RolloutChurn")).toMatchObject({ status: "True" });
    expect(w.writes.filter((x) => x.op === "pause")).toHaveLength(1);
  });

  it("action pause: a cache that has not seen the pause yet is not taken for a user's resume", async () => {
    const { w, step } = await churningRollout(PAUSE, 2);
    w.served.cacheLags = true;
    await step();
    expect(w.served.paused).toBe(true);
    expect(w.deployment.spec!.paused).not.toBe(true);
    expect(w.condition("RolloutChurn")!.message).toMatch(/To go on with the rollout: kubectl rollout resume/);
    w.deployment.spec!.paused = true; // the informer catches up
    await step();
    expect(w.condition("RolloutChurn")!.message).toMatch(/To go on with the rollout: kubectl rollout resume/);
    w.deployment.spec!.paused = false; // the user resumes
    w.served.paused = false;
    await step();
    expect(w.condition("RolloutChurn")!.message).toMatch(/resumed since/);
    expect(w.writes.filter((x) => x.op === "pause")).toHaveLength(1);
  });

  it("action pause: on a 409 reads again and pauses with the new resourceVersion; a spec change in between is decided again next interval", async () => {
    // a label changed between the GET and the PATCH: same generation, new resourceVersion
    const first = await churningRollout(PAUSE, 2);
    first.w.served.beforePause = () => { first.w.served.resourceVersion = 20; };
    await first.step();
    await first.step();
    expect(first.w.writes.filter((x) => x.op === "pause").map((x) => x.op === "pause" && `${x.resourceVersion} ${x.outcome}`)).toEqual(["10 conflict", "20 ok"]);
    expect(first.w.deployment.spec!.paused).toBe(true);

    // a rollback between the GET and the PATCH (new generation): not paused over it this interval
    const second = await churningRollout(PAUSE, 2);
    second.w.served.beforePause = () => { second.w.served.generation = 5; second.w.served.resourceVersion = 30; };
    const writesBefore = second.w.writes.length;
    await second.step();
    const pauses = second.w.writes.slice(writesBefore).filter((x) => x.op === "pause");
    expect(pauses[0]).toMatchObject({ resourceVersion: "10", outcome: "conflict" });
    expect(second.w.deployment.spec!.paused).not.toBe(true);
    // the next interval reads the rolled-back Deployment afresh and decides from it
    await second.step();
    expect(second.w.deployment.spec!.paused).toBe(true);
  });

  it("action pause: a Deployment someone paused already is left alone (and not paused after their resume); a StatefulSet is reported only", async () => {
    const found = await churningRollout({ rolloutGuard: { ...PAUSE.rolloutGuard } }, 0);
    found.w.deployment.spec!.paused = true;
    for (let i = 0; i < 3; i++) await found.step();
    expect(found.w.writes.filter((x) => x.op === "pause")).toEqual([]);
    expect(found.w.condition("RolloutChurn")!.message).toMatch(/Deployment chat was already paused when revision new2 churned/);
    found.w.deployment.spec!.paused = false;
    for (let i = 0; i < 3; i++) await found.step();
    expect(found.w.writes.filter((x) => x.op === "pause")).toEqual([]);

    const sts = await churningRollout({ targetRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: "chat" }, ...PAUSE }, 0);
    for (let i = 0; i < 4; i++) await sts.step();
    expect(sts.w.condition("RolloutChurn")).toMatchObject({ status: "True" });
    expect(sts.w.condition("RolloutChurn")!.message).toMatch(/a StatefulSet cannot be paused/);
    expect(sts.w.writes.filter((x) => x.op === "getDeployment" || x.op === "pause")).toEqual([]);
  });

  it("action none reports only; a failed pause is in the condition and one Event, and tried again", async () => {
    const none = await churningRollout({ rolloutGuard: { ...PAUSE.rolloutGuard, action: "none" } });
    expect(none.w.condition("RolloutChurn")!.message).toMatch(/action is none: reported only/);
    expect(none.w.writes.filter((x) => x.op === "pause" || x.op === "getDeployment")).toEqual([]);

    const denied = await churningRollout(PAUSE, 0);
    const forbidden = Object.assign(new Error("403: deployments.apps \"chat\" is forbidden"), { statusCode: 403 });
    denied.w.served.beforePause = () => { throw forbidden; };
    await denied.step();
    await denied.step();
    denied.w.served.beforePause = () => { throw forbidden; };
    await denied.step();
    expect(denied.w.condition("RolloutChurn")!.message).toMatch(/Could not pause Deployment chat .*forbidden.*needs patch on deployments/);
    expect(denied.w.events.filter((e) => e.reason === "RolloutPauseFailed")).toHaveLength(1);
    await denied.step(); // RBAC fixed
    expect(denied.w.deployment.spec!.paused).toBe(true);
  });
});
