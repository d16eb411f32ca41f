// Node objects for the agent's nodes: registered Ready with allocatable resources so the real
// kube-scheduler binds pods to them, kept alive by Lease renewals (what the node lifecycle
// controller watches) and a periodic status heartbeat.
import type { CoordinationV1Api, CoreV1Api, V1Node } from "@kubernetes/client-node";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { hostname, release } from "node:os";
import { K8S_VERSION } from "../config.js";
import { apiMessage, apiStatus } from "../kube.js";

export interface NodeSpec {
  readonly name: string;
  readonly ip: string;
  /** Pod addresses of this node, as a CIDR (`<prefix>.<n>.0/24`). */
  readonly podCidr: string;
  readonly zone: string;
  readonly kubeletPort: number;
}

/** Every node offers the same room: enough for tests, small enough to look like a real node. */
export const NODE_ALLOCATABLE: Readonly<Record<string, string>> = {
  cpu: "8",
  memory: "16Gi",
  pods: "110",
  "ephemeral-storage": "50Gi",
};

const LEASE_SECONDS = 40;
const LEASE_RENEW_MS = 10_000;
const STATUS_HEARTBEAT_MS = 30_000;

const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** MicroTime (Lease renewTime) wants exactly six fractional digits. */
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

function nodeStatus(spec: NodeSpec, ready: boolean) {
  const t = rfc3339();
  const cond = (type: string, status: string, reason: string, message: string) => ({
    type, status, reason, message, lastHeartbeatTime: t, lastTransitionTime: t,
  });
  return {
    capacity: NODE_ALLOCATABLE,
    allocatable: NODE_ALLOCATABLE,
    conditions: [
      cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
      cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
      cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
      ready
        ? cond("Ready", "True", "KubeletReady", "connmeter node agent is posting ready status (pods run as local processes)")
        : cond("Ready", "False", "KubeletNotReady", "connmeter node agent stopped"),
    ],
    addresses: [{ type: "InternalIP", address: spec.ip }, { type: "Hostname", address: spec.name }],
    daemonEndpoints: { kubeletEndpoint: { Port: spec.kubeletPort } },
    nodeInfo: {
      machineID: spec.name, systemUUID: spec.name, bootID: `${hostname()}-${process.pid}`,
      kernelVersion: release(), osImage: `connmeter local processes on ${hostname()}`,
      containerRuntimeVersion: "connmeter-process://1", kubeletVersion: K8S_VERSION, kubeProxyVersion: "",
      operatingSystem: "linux", architecture: process.arch === "x64" ? "amd64" : process.arch,
    },
  };
}

/** Registers the nodes and keeps them Ready until `stop()`. */
export class NodeHeartbeat {
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly core: CoreV1Api,
    private readonly coordination: CoordinationV1Api,
    private readonly nodes: readonly NodeSpec[],
    private readonly log: (line: string) => void,
  ) {}

  async register(): Promise<void> {
    for (const spec of this.nodes) await this.registerOne(spec);
    await Promise.all(this.nodes.map((n) => this.renewLease(n)));
    this.timers.push(setInterval(() => { for (const n of this.nodes) void this.renewLease(n); }, LEASE_RENEW_MS));
    this.timers.push(setInterval(() => { for (const n of this.nodes) void this.postStatus(n, true); }, STATUS_HEARTBEAT_MS));
  }

  private async registerOne(spec: NodeSpec): Promise<void> {
    const body: V1Node = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: spec.name,
        labels: {
          "kubernetes.io/hostname": spec.name,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": process.arch === "x64" ? "amd64" : process.arch,
          "topology.kubernetes.io/zone": spec.zone,
          "node.kubernetes.io/instance-type": "connmeter-local-process",
        },
      },
      spec: { podCIDR: spec.podCidr, podCIDRs: [spec.podCidr] },
    };
    try {
      await this.core.createNode({ body });
    } catch (err) {
      if (apiStatus(err) !== 409) throw new Error(`registering node ${spec.name}: ${apiMessage(err)}`);
      await this.core.patchNode({ name: spec.name, body: { metadata: { labels: body.metadata?.labels }, spec: { unschedulable: false } } }, merge);
    }
    await this.postStatus(spec, true);
    this.log(`node ${spec.name} registered (${spec.ip}, pods ${spec.podCidr})`);
  }

  private async postStatus(spec: NodeSpec, ready: boolean): Promise<void> {
    try {
      await this.core.patchNodeStatus({ name: spec.name, body: { status: nodeStatus(spec, ready) } }, merge);
    } catch (err) {
      this.log(`node ${spec.name}: status: ${apiMessage(err)}`);
    }
  }

  private async renewLease(spec: NodeSpec): Promise<void> {
    const namespace = "kube-node-lease";
    const body = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: spec.name, namespace, ownerReferences: await this.ownerRef(spec) },
      spec: { holderIdentity: spec.name, leaseDurationSeconds: LEASE_SECONDS, renewTime: microTime() },
    };
    try {
      await this.coordination.patchNamespacedLease({ name: spec.name, namespace, body: { spec: body.spec } }, merge);
    } catch (err) {
      if (apiStatus(err) !== 404) {
        this.log(`node ${spec.name}: lease: ${apiMessage(err)}`);
        return;
      }
      try {
        await this.coordination.createNamespacedLease({ namespace, body: body as never });
      } catch (e) {
        this.log(`node ${spec.name}: lease: ${apiMessage(e)}`);
      }
    }
  }

  private ownerRefs = new Map<string, { apiVersion: string; kind: string; name: string; uid: string }[]>();

  private async ownerRef(spec: NodeSpec) {
    let ref = this.ownerRefs.get(spec.name);
    if (!ref) {
      const node = await this.core.readNode({ name: spec.name });
      ref = [{ apiVersion: "v1", kind: "Node", name: spec.name, uid: node.metadata?.uid ?? "" }];
      this.ownerRefs.set(spec.name, ref);
    }
    return ref;
  }

  /** Stops the heartbeats and marks the nodes NotReady. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all(this.nodes.map((n) => this.postStatus(n, false)));
  }
}
