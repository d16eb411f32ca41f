// One pod on one node, as the kubelet would run it: a sandbox (an address, in its own network
// namespace unless pods share the host's network), init containers in order
// (native sidecars, i.e. init containers with restartPolicy Always, keep running), then the
// containers; restarts per restartPolicy with back-off; status written back; on deletion,
// SIGTERM, SIGKILL after the grace period, then the pod object is removed (grace 0).
import type { CoreV1Api, V1Pod, V1PodCondition, V1PodStatus } from "@kubernetes/client-node";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderKubeconfig } from "../kubeconfig.js";
import { apiMessage, apiStatus } from "../kube.js";
import { PodNetns } from "../pod-network.js";
import { ContainerRunner, type ContainerContext } from "./container.js";
import type { EnvSources } from "./expand.js";
import type { IpPool } from "./ip-pool.js";

/** What a pod worker needs from its node and the agent. */
export interface PodHost {
  readonly core: CoreV1Api;
  readonly nodeName: string;
  readonly nodeIP: string;
  readonly pool: IpPool;
  /** Pods get a network namespace each (false: they share the host's network). */
  readonly podNamespaces: boolean;
  readonly allocatable: Readonly<Record<string, string>>;
  readonly repoRoot: string;
  readonly podsDir: string;
  readonly recordsDir: string;
  readonly server: string;
  readonly caFile: string;
  readonly log: (line: string) => void;
  readonly done: (worker: PodWorker) => void;
}

const BACKOFF_INITIAL_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A container that ran this long is healthy again: its back-off starts over. */
const BACKOFF_RESET_MS = 60_000;
const IMAGE_RETRY_MS = 3_000;
const MIN_GRACE_SECONDS = 2;

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export class PodWorker {
  private pod: V1Pod;
  private ip = "";
  /** The pod's network namespace (none for hostNetwork pods or a shared host network). */
  private readonly netns: PodNetns | undefined;
  /** The latest attempt to create it: a release waits for it, so no namespace is left behind. */
  private creatingNetns: Promise<void> = Promise.resolve();
  private sandboxReleased = false;
  private readonly inits: ContainerRunner[] = [];
  private readonly mains: ContainerRunner[] = [];
  private initIndex = 0;
  private initFailed = false;
  private terminating: Promise<void> | undefined;
  private removedFromApi = false;
  private startTime = "";
  private readonly transitions = new Map<string, { status: string; time: string }>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly crashes = new Map<string, number>();
  private statusTimer: NodeJS.Timeout | undefined;
  private statusWriting: Promise<void> = Promise.resolve();
  private lastWritten = "";
  private baseEnv: Record<string, string> = {};
  private readonly envSources: EnvSources;

  constructor(private readonly host: PodHost, pod: V1Pod) {
    this.pod = pod;
    this.envSources = {
      podIP: () => this.ip,
      hostIP: host.nodeIP,
      serviceEnv: serviceEnv(host.server),
      nodeAllocatable: host.allocatable,
      configMap: async (namespace, name) => {
        try { return (await host.core.readNamespacedConfigMap({ name, namespace })).data ?? {}; } catch (err) {
          if (apiStatus(err) === 404) return undefined;
          throw err;
        }
      },
      secret: async (namespace, name) => {
        try {
          const data = (await host.core.readNamespacedSecret({ name, namespace })).data ?? {};
          return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
        } catch (err) {
          if (apiStatus(err) === 404) return undefined;
          throw err;
        }
      },
    };
    const ctx = (isInit: boolean): ContainerContext => ({
      pod: () => this.pod, repoRoot: host.repoRoot, podDir: this.podDir, recordsDir: host.recordsDir,
      envSources: this.envSources, baseEnv: () => this.baseEnv,
      onChange: () => this.scheduleStatus(),
      onExit: (r: ContainerRunner, code: number) => (isInit ? this.onInitExit(r, code) : this.onMainExit(r, code)),
      onUnhealthy: (r: ContainerRunner, why: string) => void this.onUnhealthy(r, why),
      inPod: (argv: readonly string[]) => this.netns?.wrap(argv) ?? [...argv],
      log: host.log,
    });
    if (host.podNamespaces && !pod.spec?.hostNetwork) this.netns = new PodNetns(this.uid);
    for (const c of pod.spec?.initContainers ?? []) this.inits.push(new ContainerRunner(c, true, ctx(true)));
    for (const c of pod.spec?.containers ?? []) this.mains.push(new ContainerRunner(c, false, ctx(false)));
  }

  get uid(): string {
    return this.pod.metadata?.uid ?? "";
  }

  get key(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  get podDir(): string {
    return join(this.host.podsDir, `${this.pod.metadata?.namespace}_${this.pod.metadata?.name}_${this.uid}`);
  }

  /** The container runner named `name` (for the kubelet API's logs). */
  container(name: string): ContainerRunner | undefined {
    return [...this.mains, ...this.inits].find((r) => r.name === name);
  }

  /** A newer version of the pod object was observed. */
  update(pod: V1Pod): void {
    this.pod = pod;
    if (pod.metadata?.deletionTimestamp) void this.terminate(pod.metadata.deletionGracePeriodSeconds ?? this.specGrace());
  }

  /** The pod object is gone from the API (e.g. a forced delete): stop its processes. */
  removed(last?: V1Pod): void {
    this.removedFromApi = true;
    void this.terminate(last?.metadata?.deletionGracePeriodSeconds ?? this.specGrace());
  }

  private specGrace(): number {
    return this.pod.spec?.terminationGracePeriodSeconds ?? 30;
  }

  /** Sets up the sandbox (address, service account) and starts the first containers. */
  async start(): Promise<void> {
    const previous = this.pod.status?.podIP;
    if (this.pod.spec?.hostNetwork) this.ip = this.host.nodeIP;
    else this.ip = previous && this.host.pool.claim(previous) ? previous : this.host.pool.allocate();
    this.startTime = this.pod.status?.startTime ? new Date(this.pod.status.startTime).toISOString().replace(/\.\d+Z$/, "Z") : now();
    mkdirSync(this.podDir, { recursive: true });
    this.scheduleStatus();
    while (!this.terminating) {
      try {
        this.creatingNetns = this.netns?.create(this.ip, this.host.nodeIP) ?? Promise.resolve();
        await this.creatingNetns;
        break;
      } catch (err) {
        this.event("Warning", "FailedCreatePodSandBox", `${(err as Error).message}; retrying`);
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
    while (!this.terminating) {
      try {
        await this.setupServiceAccount();
        break;
      } catch (err) {
        this.host.log(`${this.key}: service account token: ${apiMessage(err)}; retrying`);
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
    if (this.terminating) return;
    this.startNextInit();
  }

  private async setupServiceAccount(): Promise<void> {
    const hostname = this.pod.spec?.hostname ?? this.pod.metadata?.name ?? "";
    const base: Record<string, string> = { HOSTNAME: hostname };
    for (const k of ["PATH", "HOME", "LANG", "TZ", "TMPDIR"]) {
      const v = process.env[k];
      if (v != null) base[k] = v;
    }
    if (this.pod.spec?.automountServiceAccountToken !== false) {
      const namespace = this.pod.metadata?.namespace ?? "default";
      const sa = this.pod.spec?.serviceAccountName || "default";
      const req = await this.host.core.createNamespacedServiceAccountToken({
        name: sa, namespace,
        body: { spec: { audiences: [], expirationSeconds: 86_400, boundObjectRef: { kind: "Pod", apiVersion: "v1", name: this.pod.metadata?.name, uid: this.uid } } },
      });
      const token = req.status?.token ?? "";
      const dir = join(this.podDir, "serviceaccount");
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "token"), token, { mode: 0o600 });
      writeFileSync(join(dir, "namespace"), namespace);
      writeFileSync(join(dir, "ca.crt"), readFileSync(this.host.caFile));
      const kubeconfig = join(this.podDir, "kubeconfig");
      writeFileSync(kubeconfig, renderKubeconfig({ server: this.host.server, caFile: this.host.caFile, user: `system:serviceaccount:${namespace}:${sa}`, token, namespace }), { mode: 0o600 });
      // A process cannot see /var/run/secrets/...: client libraries find the token through KUBECONFIG.
      base.KUBECONFIG = kubeconfig;
      base.CONNMETER_SERVICEACCOUNT_DIR = dir;
    }
    this.baseEnv = base;
  }

  // --- init containers, then containers ---

  private startNextInit(): void {
    if (this.terminating) return;
    const next = this.inits[this.initIndex];
    if (!next) {
      for (const r of this.mains) void this.startContainer(r);
      this.scheduleStatus();
      return;
    }
    void this.startContainer(next).then((ok) => {
      // A native sidecar (restartPolicy Always) lets the next init container start once it runs.
      if (ok && next.spec.restartPolicy === "Always") { this.initIndex++; this.startNextInit(); }
    });
  }

  private async startContainer(r: ContainerRunner): Promise<boolean> {
    if (this.terminating) return false;
    const ok = await r.start();
    if (ok) this.event("Normal", "Started", `Started container ${r.name} as local process ${r.status().containerID ?? ""} on ${this.ip}`);
    if (!ok && !this.terminating) {
      this.later(IMAGE_RETRY_MS, () => void this.startContainer(r).then((started) => {
        if (started && r.isInit && r.spec.restartPolicy === "Always" && this.inits[this.initIndex] === r) {
          this.initIndex++;
          this.startNextInit();
        }
      }));
    }
    return ok;
  }

  private onInitExit(r: ContainerRunner, code: number): void {
    if (this.terminating) return;
    if (r.spec.restartPolicy === "Always") return this.restartLater(r, code);
    if (code === 0) {
      this.initIndex++;
      this.startNextInit();
    } else if (this.restartPolicy() === "Never") {
      this.initFailed = true;
      this.event("Warning", "Failed", `init container ${r.name} exited with ${code}`);
      void this.finishTerminal();
    } else this.restartLater(r, code);
  }

  private onMainExit(r: ContainerRunner, code: number): void {
    if (this.terminating) return;
    const policy = this.restartPolicy();
    if (policy === "Always" || (policy === "OnFailure" && code !== 0)) return this.restartLater(r, code);
    if (this.mains.every((m) => m.state.kind === "terminated")) void this.finishTerminal();
  }

  private restartPolicy(): string {
    return this.pod.spec?.restartPolicy ?? "Always";
  }

  private restartLater(r: ContainerRunner, code: number): void {
    const ranMs = r.state.kind === "terminated" ? Date.parse(r.state.finishedAt) - Date.parse(r.state.startedAt) : 0;
    const crashes = ranMs >= BACKOFF_RESET_MS ? 0 : (this.crashes.get(r.name) ?? 0);
    this.crashes.set(r.name, crashes + 1);
    const delay = Math.min(BACKOFF_INITIAL_MS * 2 ** crashes, BACKOFF_MAX_MS);
    this.event("Warning", "BackOff", `container ${r.name} exited with ${code}; restarting in ${delay / 1000}s`);
    r.prepareRestart();
    r.wait("CrashLoopBackOff", `back-off ${delay / 1000}s restarting failed container=${r.name} pod=${this.pod.metadata?.name}`);
    this.later(delay, () => void this.startContainer(r));
  }

  private async onUnhealthy(r: ContainerRunner, why: string): Promise<void> {
    if (this.terminating) return;
    this.event("Warning", "Unhealthy", `${r.name}: ${why}; killing it`);
    await r.stop(this.specGrace() * 1000);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
  }

  // --- termination ---

  /** Stops every container (SIGTERM, SIGKILL after the grace period) and removes the pod. */
  terminate(graceSeconds: number): Promise<void> {
    // Like the kubelet, never less than 2 s, even for a forced delete (grace 0).
    this.terminating ??= this.doTerminate(Math.max(MIN_GRACE_SECONDS, graceSeconds));
    return this.terminating;
  }

  private async doTerminate(graceSeconds: number): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.event("Normal", "Killing", `Stopping containers (grace period ${graceSeconds}s)`);
    const graceMs = graceSeconds * 1000;
    await Promise.all(this.mains.map((r) => r.stop(graceMs)));
    // Sidecars stop after the containers they serve, in reverse order.
    for (const r of [...this.inits].reverse()) await r.stop(graceMs);
    for (const r of [...this.mains, ...this.inits]) if (r.state.kind === "waiting") r.wait("ContainerStatusUnknown", "pod deleted before the container ran");
    if (!this.removedFromApi) {
      await this.writeStatusNow();
      await this.deleteFromApi();
    }
    await this.releaseSandbox();
    this.host.done(this);
  }

  private async finishTerminal(): Promise<void> {
    await this.writeStatusNow();
    await this.releaseSandbox();
  }

  /**
   * Deletes the network namespace (its processes have exited) and gives back the address, once:
   * a pod that completed and is deleted later must not free an address given to another pod since.
   */
  private async releaseSandbox(): Promise<void> {
    if (this.sandboxReleased) return;
    this.sandboxReleased = true;
    await this.creatingNetns.catch(() => undefined);
    await this.netns?.remove();
    this.host.pool.release(this.ip);
  }

  private async deleteFromApi(): Promise<void> {
    const { name = "", namespace = "" } = this.pod.metadata ?? {};
    try {
      await this.host.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: this.uid } } });
    } catch (err) {
      const code = apiStatus(err);
      if (code !== 404 && code !== 409) this.host.log(`${this.key}: delete: ${apiMessage(err)}`);
    }
  }

  /** Stops the processes without touching the API (the agent is shutting down). */
  async shutdown(graceMs: number): Promise<void> {
    this.removedFromApi = true;
    this.terminating ??= (async () => {
      for (const t of this.timers) clearTimeout(t);
      await Promise.all([...this.mains, ...this.inits].map((r) => r.stop(graceMs)));
      await this.releaseSandbox();
    })();
    await this.terminating;
  }

  // --- status ---

  private scheduleStatus(): void {
    if (this.statusTimer) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      void this.writeStatusNow();
    }, 50);
  }

  private writeStatusNow(): Promise<void> {
    this.statusWriting = this.statusWriting.then(() => this.patchStatus());
    return this.statusWriting;
  }

  private async patchStatus(): Promise<void> {
    if (this.removedFromApi) return;
    const status = this.buildStatus();
    const json = JSON.stringify(status);
    if (json === this.lastWritten) return;
    const { name = "", namespace = "" } = this.pod.metadata ?? {};
    try {
      await this.host.core.patchNamespacedPodStatus({ name, namespace, body: { status } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
      this.lastWritten = json;
    } catch (err) {
      if (apiStatus(err) === 404) return;
      this.host.log(`${this.key}: status: ${apiMessage(err)}`);
      if (!this.terminating) setTimeout(() => this.scheduleStatus(), 1_000);
    }
  }

  private phase(): string {
    if (this.initFailed) return "Failed";
    const initsDone = this.initIndex >= this.inits.length;
    if (!initsDone) return "Pending";
    let waiting = 0, running = 0, stopped = 0, succeeded = 0;
    for (const r of this.mains) {
      const s = r.state;
      if (s.kind === "running") running++;
      else if (s.kind === "terminated") { stopped++; if (s.exitCode === 0) succeeded++; }
      else if (r.lastTerminated) { stopped++; }
      else waiting++;
    }
    if (waiting > 0) return "Pending";
    if (running > 0) return "Running";
    if (stopped > 0) {
      const policy = this.restartPolicy();
      if (policy === "Always") return this.terminating ? (stopped === succeeded ? "Succeeded" : "Failed") : "Running";
      if (stopped === succeeded) return "Succeeded";
      if (policy === "Never" || this.terminating) return "Failed";
      return "Running";
    }
    return "Pending";
  }

  private condition(type: string, ok: boolean, reason?: string, message?: string): V1PodCondition {
    const status = ok ? "True" : "False";
    const prev = this.transitions.get(type);
    const time = prev && prev.status === status ? prev.time : now();
    this.transitions.set(type, { status, time });
    return { type, status, lastTransitionTime: time, ...(ok || !reason ? {} : { reason, message }) } as unknown as V1PodCondition;
  }

  private buildStatus(): V1PodStatus {
    const initsDone = this.initIndex >= this.inits.length;
    const sidecars = this.inits.filter((r) => r.spec.restartPolicy === "Always");
    const unready = [...sidecars, ...this.mains].filter((r) => !r.ready).map((r) => r.name);
    const containersReady = initsDone && unready.length === 0 && !this.terminating;
    const current = this.pod.status?.conditions ?? [];
    const gates = (this.pod.spec?.readinessGates ?? []).map((g) => g.conditionType);
    const gatesOk = gates.every((g) => current.some((c) => c.type === g && c.status === "True"));
    const notReadyMsg = `containers with unready status: [${unready.join(" ")}]`;
    const own = ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"];
    const conditions = [
      this.condition("PodReadyToStartContainers", this.ip !== "" && !this.terminating),
      this.condition("Initialized", initsDone, "ContainersNotInitialized", `containers with incomplete status: [${this.inits.slice(this.initIndex).map((r) => r.name).join(" ")}]`),
      this.condition("ContainersReady", containersReady, "ContainersNotReady", notReadyMsg),
      this.condition("Ready", containersReady && gatesOk, gatesOk ? "ContainersNotReady" : "ReadinessGatesNotReady", notReadyMsg),
      current.find((c) => c.type === "PodScheduled") ?? this.condition("PodScheduled", true),
      ...current.filter((c) => !own.includes(c.type)),
    ];
    const status = {
      phase: this.phase(),
      conditions,
      hostIP: this.host.nodeIP,
      hostIPs: [{ ip: this.host.nodeIP }],
      ...(this.ip ? { podIP: this.ip, podIPs: [{ ip: this.ip }] } : {}),
      startTime: this.startTime,
      containerStatuses: this.mains.map((r) => r.status()),
      ...(this.inits.length ? { initContainerStatuses: this.inits.map((r) => r.status()) } : {}),
    };
    return status as unknown as V1PodStatus;
  }

  private event(type: "Normal" | "Warning", reason: string, message: string): void {
    const { name = "", namespace = "default" } = this.pod.metadata ?? {};
    const ts = new Date();
    const body = {
      metadata: { name: `${name}.${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`, namespace },
      involvedObject: { kind: "Pod", apiVersion: "v1", name, namespace, uid: this.uid },
      reason, message, type, count: 1, firstTimestamp: ts, lastTimestamp: ts,
      source: { component: "kubelet", host: this.host.nodeName },
      reportingComponent: "kubelet", reportingInstance: this.host.nodeName,
    };
    this.host.core.createNamespacedEvent({ namespace, body }).catch(() => { /* events are best effort */ });
  }
}

/** The variables the kubelet gives every container for the `kubernetes` Service (here: the real API server). */
function serviceEnv(server: string): Record<string, string> {
  const url = new URL(server);
  return {
    KUBERNETES_SERVICE_HOST: url.hostname,
    KUBERNETES_SERVICE_PORT: url.port,
    KUBERNETES_SERVICE_PORT_HTTPS: url.port,
    KUBERNETES_PORT: `tcp://${url.hostname}:${url.port}`,
  };
}
