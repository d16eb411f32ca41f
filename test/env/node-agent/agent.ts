// The node agent: a kubelet stand-in for several nodes at once. It registers the nodes, watches
// the pods bound to them and runs each pod as local processes in its own network namespace
// (PodWorker, pod-network.ts). Watching is level-triggered: every event and a periodic relist
// lead to the same `sync(pod)`.
import {
  CoordinationV1Api, CoreV1Api, makeInformer, type Informer, type KubeConfig, type ObjectCache, type V1Pod,
} from "@kubernetes/client-node";
import type { Server } from "node:https";
import { join } from "node:path";
import { isLoopbackPodNet, nodeAddress, nodeName, statePaths, type ClusterConfig } from "../config.js";
import { apiMessage } from "../kube.js";
import { removePodNamespaces } from "../pod-network.js";
import { stopRecordedProcesses } from "../procs.js";
import { IpPool } from "./ip-pool.js";
import { startKubeletServer } from "./kubelet-server.js";
import { NODE_ALLOCATABLE, NodeHeartbeat, type NodeSpec } from "./nodes.js";
import { PodWorker, type PodHost } from "./pod-worker.js";

const RESYNC_MS = 10_000;
const WATCH_RETRY_MAX_MS = 15_000;

interface WorkerEntry {
  readonly worker: PodWorker;
  readonly key: string;
  readonly nodeName: string;
}

interface AgentNode {
  readonly spec: NodeSpec;
  readonly pool: IpPool;
}

export class NodeAgent {
  private readonly core: CoreV1Api;
  private readonly nodes = new Map<string, AgentNode>();
  private readonly workers = new Map<string, WorkerEntry>();
  /** Pods whose worker finished; ignored until they disappear from the API. */
  private readonly finished = new Set<string>();
  private readonly heartbeat: NodeHeartbeat;
  private informer: (Informer<V1Pod> & ObjectCache<V1Pod>) | undefined;
  private readonly servers: Server[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private watchFailures = 0;
  private stopping = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly config: ClusterConfig,
    private readonly log: (line: string) => void,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    for (let i = 1; i <= config.nodeCount; i++) {
      const spec: NodeSpec = {
        name: nodeName(i), ip: nodeAddress(config, i), podCidr: `${config.podNetPrefix}.${i}.0/24`,
        zone: `zone-${String.fromCharCode(96 + (((i - 1) % 3) + 1))}`, kubeletPort: config.kubeletPort,
      };
      this.nodes.set(spec.name, { spec, pool: new IpPool(`${config.podNetPrefix}.${i}`) });
    }
    this.heartbeat = new NodeHeartbeat(this.core, kc.makeApiClient(CoordinationV1Api), [...this.nodes.values()].map((n) => n.spec), log);
  }

  async start(): Promise<void> {
    const paths = statePaths(this.config);
    // Containers of an agent that died without stopping them still hold their addresses.
    const orphans = await stopRecordedProcesses(paths.containers, 2_000);
    if (orphans) this.log(`stopped ${orphans} container process(es) left by a previous agent`);
    // And their pods' network namespaces: every pod gets a fresh one when its worker starts.
    const namespaces = isLoopbackPodNet(this.config) ? 0 : await removePodNamespaces();
    if (namespaces) this.log(`removed ${namespaces} pod network namespace(s) left by a previous agent`);
    const pki = paths.pki;
    for (const { spec } of this.nodes.values()) {
      this.servers.push(await startKubeletServer(spec.ip, spec.kubeletPort,
        { ca: join(pki, "ca.crt"), cert: join(pki, "kubelet.crt"), key: join(pki, "kubelet.key") },
        (ns, pod, container) => this.findContainer(spec.name, ns, pod, container)));
    }
    await this.heartbeat.register();
    this.startInformer();
    this.resyncTimer = setInterval(() => void this.resync(), RESYNC_MS);
  }

  private findContainer(node: string, ns: string, pod: string, container: string) {
    for (const w of this.workers.values()) {
      if (w.key === `${ns}/${pod}` && w.nodeName === node) return w.worker.container(container);
    }
    return undefined;
  }

  private startInformer(): void {
    const informer = makeInformer<V1Pod>(this.kc, "/api/v1/pods", () => this.core.listPodForAllNamespaces());
    const onPod = (pod: V1Pod) => this.sync(pod);
    informer.on("add", onPod);
    informer.on("update", onPod);
    informer.on("delete", (pod) => this.podRemoved(pod));
    informer.on("connect", () => { this.watchFailures = 0; });
    informer.on("error", (err: unknown) => {
      if (this.stopping) return;
      // The informer stops on error: start it again with jittered exponential back-off.
      this.watchFailures++;
      const delay = Math.min(500 * 2 ** this.watchFailures, WATCH_RETRY_MAX_MS) * (0.5 + Math.random() / 2);
      this.log(`pod watch failed (${apiMessage(err)}); restarting in ${Math.round(delay)} ms`);
      setTimeout(() => { if (!this.stopping) void informer.start().catch(() => undefined); }, delay);
    });
    this.informer = informer;
    void informer.start().catch((err: unknown) => this.log(`pod watch: ${apiMessage(err)}`));
  }

  /** Relists as a safety net: a missed event must not leave a pod unstarted or undeleted. */
  private async resync(): Promise<void> {
    try {
      const list = await this.core.listPodForAllNamespaces();
      const seen = new Set<string>();
      for (const pod of list.items) {
        seen.add(pod.metadata?.uid ?? "");
        this.sync(pod);
      }
      for (const [uid, w] of this.workers) if (!seen.has(uid)) w.worker.removed();
      for (const uid of this.finished) if (!seen.has(uid)) this.finished.delete(uid);
    } catch (err) {
      this.log(`resync: ${apiMessage(err)}`);
    }
  }

  private readonly byUid = (pod: V1Pod) => pod.metadata?.uid ?? "";

  /** Brings the local processes of `pod` in line with the pod object. */
  private sync(pod: V1Pod): void {
    if (this.stopping) return;
    const nodeName = pod.spec?.nodeName;
    const node = nodeName ? this.nodes.get(nodeName) : undefined;
    if (!node) return;
    const uid = this.byUid(pod);
    const entry = this.workers.get(uid);
    if (entry) return entry.worker.update(pod);
    if (this.finished.has(uid)) return;
    const phase = pod.status?.phase;
    if ((phase === "Succeeded" || phase === "Failed") && !pod.metadata?.deletionTimestamp) return;
    const worker = new PodWorker(this.podHost(node), pod);
    this.workers.set(uid, { worker, key: worker.key, nodeName: node.spec.name });
    worker.update(pod);
    void worker.start().catch((err: unknown) => this.log(`${worker.key}: start failed: ${(err as Error).stack ?? String(err)}`));
  }

  private podRemoved(pod: V1Pod): void {
    this.workers.get(this.byUid(pod))?.worker.removed(pod);
  }

  private podHost(node: AgentNode): PodHost {
    const paths = statePaths(this.config);
    return {
      core: this.core, nodeName: node.spec.name, nodeIP: node.spec.ip, pool: node.pool, allocatable: NODE_ALLOCATABLE,
      podNamespaces: !isLoopbackPodNet(this.config),
      repoRoot: this.config.repoRoot, podsDir: paths.pods, recordsDir: paths.containers,
      server: this.kc.getCurrentCluster()?.server ?? "", caFile: join(paths.pki, "ca.crt"),
      log: this.log,
      done: (w) => {
        this.workers.delete(w.uid);
        this.finished.add(w.uid);
      },
    };
  }

  /** Stops every container (SIGTERM, then SIGKILL after `graceMs`), the watch and the servers. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.informer?.stop().catch(() => undefined);
    await Promise.all([...this.workers.values()].map((w) => w.worker.shutdown(graceMs)));
    await this.heartbeat.stop().catch(() => undefined);
    for (const s of this.servers) s.close();
  }
}
