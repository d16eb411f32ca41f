// Where the local cluster keeps its state and which addresses it uses. Every value can be
// overridden by an environment variable so two checkouts (or a busy port) can coexist.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Pinned Kubernetes version (test/env/k8s/go.mod, test/env/k8s-version.sh). */
export const K8S_VERSION = "v1.35.4";

/** Settings of one local cluster, resolved from the environment. */
export interface ClusterConfig {
  /** Repository root (holds package.json, dist/, crds/). */
  readonly repoRoot: string;
  /** State directory: pids, data, logs, pki (`.local/cluster`). */
  readonly stateDir: string;
  /** Admin kubeconfig written by cluster-up (`.local/kubeconfig`). */
  readonly kubeconfigPath: string;
  readonly apiserverPort: number;
  readonly etcdClientPort: number;
  readonly etcdPeerPort: number;
  /** Port of the node agent's kubelet API (logs) on every node's IP. */
  readonly kubeletPort: number;
  /** Number of Nodes the agent registers. */
  readonly nodeCount: number;
  /**
   * First two octets of the pod addresses: node n is `<prefix>.<n>.1`, its pods `<prefix>.<n>.2-254`.
   * 127.x: pods share the host's network (no privileges needed); any other: one network
   * namespace per pod on a bridge (pod-network.ts).
   */
  readonly podNetPrefix: string;
  /** Cluster IP range for Services (not routed: there is no kube-proxy). */
  readonly serviceCidr: string;
}

/** Finds the repository root from this file, in test/env/ or in dist/test/env/. */
export function findRepoRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "connmeter") {
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`connmeter repository root not found above ${from}`);
    dir = parent;
  }
}

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw == null || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name}=${raw} is invalid: expected an integer in ${min}..${max}`);
  }
  return value;
}

/** Prefix of the pod network when pods get their own network namespaces (RFC 2544 test range). */
export const ROUTED_POD_NET = "198.18";
/** Prefix of the pod network without privileges: loopback addresses on the host's network. */
export const LOOPBACK_POD_NET = "127.10";

/**
 * A system tool's absolute path, or undefined if it is not installed. Root's tools live in sbin
 * directories a PATH may lack (`iptables` is in /usr/sbin only), and a container's env may set
 * any PATH.
 */
export function systemTool(name: string): string | undefined {
  return ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map((d) => join(d, name)).find((p) => existsSync(p));
}

/**
 * Whether this process may give pods network namespaces: CAP_NET_ADMIN (bridge, veths,
 * addresses) and CAP_SYS_ADMIN (`ip netns add`, `nsenter`), with `ip` and `nsenter` installed.
 */
export function canMakePodNamespaces(): boolean {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"}`);
    const has = (bit: bigint) => (capEff & (1n << bit)) !== 0n;
    return has(12n) && has(21n) && systemTool("ip") != null && systemTool("nsenter") != null;
  } catch {
    return false;
  }
}

/**
 * The pod network prefix: CONNMETER_POD_NET ("127.<n>" for loopback addresses on the host's
 * network, any other "a.b" for a /16 of per-pod network namespaces), or by default 198.18
 * when namespaces can be made and 127.10 otherwise.
 */
function podNetPrefixFromEnv(): string {
  const raw = process.env.CONNMETER_POD_NET ?? "auto";
  if (raw === "auto") return canMakePodNamespaces() ? ROUTED_POD_NET : LOOPBACK_POD_NET;
  const octet = "(25[0-5]|2[0-4]\\d|1?\\d?\\d)";
  if (!new RegExp(`^${octet}\\.${octet}$`).test(raw)) {
    throw new Error(`CONNMETER_POD_NET=${raw} is invalid: expected "auto" or two octets like "198.18" (a network namespace per pod) or "127.10" (loopback, pods share the host's network)`);
  }
  return raw;
}

/**
 * Whether pods share the host's network on loopback addresses (127/8) rather than each having
 * its own network namespace: then containers of different pods cannot bind the same port.
 */
export function isLoopbackPodNet(config: ClusterConfig): boolean {
  return config.podNetPrefix.startsWith("127.");
}

/**
 * The API server's address: on loopback when pods share the host's network, else the pod
 * network's gateway `<prefix>.0.1` (on the bridge), which the host and every pod reach.
 */
export function apiserverHost(config: ClusterConfig): string {
  return isLoopbackPodNet(config) ? "127.0.0.1" : `${config.podNetPrefix}.0.1`;
}

/** Reads the cluster settings (see the README of test/env for the variables). */
export function loadClusterConfig(): ClusterConfig {
  const repoRoot = findRepoRoot();
  const local = join(repoRoot, ".local");
  return {
    repoRoot,
    stateDir: resolve(process.env.CONNMETER_CLUSTER_DIR ?? join(local, "cluster")),
    kubeconfigPath: resolve(process.env.CONNMETER_KUBECONFIG_OUT ?? join(local, "kubeconfig")),
    apiserverPort: intFromEnv("CONNMETER_APISERVER_PORT", 16443, 1024, 65535),
    etcdClientPort: intFromEnv("CONNMETER_ETCD_PORT", 16379, 1024, 65534),
    etcdPeerPort: intFromEnv("CONNMETER_ETCD_PORT", 16379, 1024, 65534) + 1,
    kubeletPort: intFromEnv("CONNMETER_KUBELET_PORT", 10250, 1024, 65535),
    nodeCount: intFromEnv("CONNMETER_NODES", 3, 1, 200),
    podNetPrefix: podNetPrefixFromEnv(),
    // Inside RFC 2544's test range like every test network (DESIGN.md), apart from the pods'
    // 198.18.0.0/16 and from kind's ranges in 198.19 (test/kind/README.md).
    serviceCidr: "198.19.64.0/20",
  };
}

/** The address of node `index` (1-based): also its kubelet API address. */
export function nodeAddress(config: ClusterConfig, index: number): string {
  return `${config.podNetPrefix}.${index}.1`;
}

/** The name of node `index` (1-based). */
export function nodeName(index: number): string {
  return `connmeter-node-${index}`;
}

/** Layout of the state directory. */
export function statePaths(config: ClusterConfig) {
  const s = config.stateDir;
  return {
    state: join(s, "state.json"),
    lock: join(s, "lock"),
    pki: join(s, "pki"),
    etcdData: join(s, "etcd"),
    logs: join(s, "logs"),
    kubeconfigs: join(s, "kubeconfigs"),
    /** One JSON file per running container process, written by the node agent. */
    containers: join(s, "containers"),
    /** Test runs using the cluster (`<pid>.json`), so the last one out stops it. */
    users: join(s, "users"),
    /** Per pod: container logs and its service-account files. */
    pods: join(s, "pods"),
  } as const;
}
