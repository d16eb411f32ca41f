// The pod network. Node n is `<prefix>.<n>.1`, its pods `<prefix>.<n>.2-254`.
//
// Routed prefixes (the default 198.18, RFC 2544's test range): like a real node, every pod gets
// its own network namespace, so the containers of a pod share its 127.0.0.1 and every pod may
// bind 0.0.0.0:<any port>. cluster-up makes a bridge `connmeter0` holding the gateway
// `<prefix>.0.1/16` (where the API server listens) and each node's address; the node agent
// gives a pod a namespace `connmeter-<pod uid>` with a veth pair (`eth0` inside, on the bridge
// outside), its address and a default route via its node, and runs its containers in it with
// `nsenter --net`. The host reaches pods through the bridge's connected route.
//
// Loopback prefixes (127.x, no privileges needed): pods share the host's network and must
// bind their own address ($(POD_IP)).
import { execFile, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { isLoopbackPodNet, nodeAddress, systemTool, type ClusterConfig } from "./config.js";

type Log = (line: string) => void;

const execFileAsync = promisify(execFile);

const BRIDGE = "connmeter0";
const NETNS_PREFIX = "connmeter-";
const IP = systemTool("ip") ?? "ip";
const IPTABLES = systemTool("iptables") ?? "iptables";
const NSENTER = systemTool("nsenter") ?? "nsenter";

/** What cluster-up set up for the pod network, so that cluster-down removes exactly that. */
export interface PodNetRecord {
  readonly prefix: string;
  /** Whether cluster-up made the bridge (a bridge found there is left alone). */
  readonly bridgeAdded?: boolean;
  /** Whether cluster-up inserted `FORWARD -i connmeter0 -o connmeter0 -j ACCEPT`. */
  readonly forwardRuleAdded?: boolean;
  /** Clusters of earlier versions made the prefix local with a route on `lo`. */
  readonly routeAdded?: boolean;
}

function ip(args: readonly string[]): { ok: boolean; out: string; err: string } {
  const res = spawnSync(IP, args, { encoding: "utf8" });
  return { ok: res.status === 0, out: res.stdout ?? "", err: (res.stderr || res.error?.message || "").trim() };
}

function mustIp(args: readonly string[], why: string): void {
  const res = ip(args);
  if (!res.ok) {
    throw new Error(`cannot ${why} (\`ip ${args.join(" ")}\` failed: ${res.err}): run as root, ` +
      "or set CONNMETER_POD_NET=127.10 for loopback pod addresses on the host's network");
  }
}

/** The FORWARD rule that lets pods talk to each other across the bridge. */
const FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"];

/**
 * Bridged traffic goes through iptables' FORWARD chain when br_netfilter is loaded, and Docker
 * sets that chain's policy to DROP: then pods could not reach each other. Like Docker for its
 * own bridges, accept traffic that stays on the bridge. Returns whether the rule was added.
 */
function ensureForwardRule(log: Log): boolean {
  const iptables = spawnSync(IPTABLES, ["-C", ...FORWARD_RULE], { encoding: "utf8" });
  if (iptables.error) {
    if (bridgeTrafficFiltered()) {
      log("cluster: bridged traffic goes through iptables (br_netfilter) but no `iptables` was found: " +
        `if pods cannot reach each other, allow it with \`iptables -I ${FORWARD_RULE.join(" ")}\``);
    }
    return false;
  }
  if (iptables.status === 0) return false;
  const policy = spawnSync(IPTABLES, ["-S", "FORWARD"], { encoding: "utf8" }).stdout ?? "";
  if (policy.includes("-P FORWARD ACCEPT")) return false;
  const res = spawnSync(IPTABLES, ["-I", ...FORWARD_RULE], { encoding: "utf8" });
  if (res.status !== 0) {
    log(`cluster: could not let pods reach each other through iptables' FORWARD chain (policy DROP): ${res.stderr.trim()}`);
    return false;
  }
  log(`cluster: iptables' FORWARD policy is DROP (set by Docker): added \`iptables -I ${FORWARD_RULE.join(" ")}\` so pods reach each other; cluster-down removes it`);
  return true;
}

/** Whether br_netfilter passes bridged IPv4 traffic through iptables. */
function bridgeTrafficFiltered(): boolean {
  try {
    return readFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "utf8").trim() === "1";
  } catch {
    return false; // br_netfilter not loaded
  }
}

/** Sets up the pod network for cluster-up (see the top of this file). */
export function ensurePodNetwork(config: ClusterConfig, log: Log): PodNetRecord {
  const prefix = config.podNetPrefix;
  if (isLoopbackPodNet(config)) {
    log(`cluster: pods share the host's network on loopback addresses ${prefix}.<node>.<n> (bind $(POD_IP), not 0.0.0.0); ` +
      "EndpointSlices stay empty (the API server refuses loopback endpoints). Run as root for a network namespace per pod");
    return { prefix };
  }
  const cidr = `${prefix}.0.0/16`;
  // Earlier versions made the whole prefix local on `lo`: that would swallow the pods' traffic.
  const legacy = ip(["-o", "route", "show", "table", "local", cidr]);
  if (legacy.ok && legacy.out.includes("dev lo")) {
    mustIp(["route", "del", "local", cidr, "dev", "lo"], `remove the old route local ${cidr} dev lo`);
    log(`cluster: removed the route local ${cidr} dev lo left by an earlier version (pods now have their own network namespaces)`);
  }
  const bridgeAdded = !ip(["link", "show", BRIDGE]).ok;
  if (bridgeAdded) mustIp(["link", "add", BRIDGE, "type", "bridge"], `create the pod bridge ${BRIDGE}`);
  const gateway = `${prefix}.0.1`;
  const present = ip(["-o", "-4", "addr", "show", "dev", BRIDGE]).out;
  for (const address of [gateway, ...Array.from({ length: config.nodeCount }, (_, i) => nodeAddress(config, i + 1))]) {
    if (!present.includes(` ${address}/`)) mustIp(["addr", "add", `${address}/16`, "dev", BRIDGE], `give ${BRIDGE} the address ${address}`);
  }
  mustIp(["link", "set", BRIDGE, "up"], `bring ${BRIDGE} up`);
  const forwardRuleAdded = ensureForwardRule(log);
  log(`cluster: pods get a network namespace each on bridge ${BRIDGE} (${cidr}, gateway and API server ${gateway}, nodes ${prefix}.<n>.1)` +
    (bridgeAdded ? "; cluster-down removes it" : `; ${BRIDGE} was already there and stays`));
  return { prefix, bridgeAdded, forwardRuleAdded };
}

/** Undoes ensurePodNetwork: namespaces left behind, the bridge and the FORWARD rule it added. */
export async function removePodNetwork(record: PodNetRecord | undefined, log: Log): Promise<void> {
  if (!record) return;
  if (record.routeAdded) {
    const cidr = `${record.prefix}.0.0/16`;
    const res = ip(["route", "del", "local", cidr, "dev", "lo"]);
    log(res.ok ? `cluster: removed route local ${cidr}` : `cluster: could not remove route local ${cidr}: ${res.err}`);
  }
  const left = await removePodNamespaces();
  if (left) log(`cluster: removed ${left} pod network namespace(s) the node agent left behind`);
  if (record.forwardRuleAdded) spawnSync(IPTABLES, ["-D", ...FORWARD_RULE]);
  if (record.bridgeAdded) {
    const res = ip(["link", "delete", BRIDGE]);
    log(res.ok ? `cluster: removed bridge ${BRIDGE}` : `cluster: could not remove bridge ${BRIDGE}: ${res.err}`);
  }
}

/** Deletes every pod namespace (of a node agent that died); returns how many there were. */
export async function removePodNamespaces(): Promise<number> {
  const names = listPodNamespaces();
  await Promise.all(names.map(deleteNetns));
  return names.length;
}

/** `ip netns delete`: the namespace goes once its last process has exited, with its interfaces. */
async function deleteNetns(name: string): Promise<void> {
  await execFileAsync(IP, ["netns", "delete", name]).catch(() => undefined); // already gone
}

/** Names of the pod namespaces that exist (`ip netns list`). */
function listPodNamespaces(): string[] {
  const res = ip(["netns", "list"]);
  if (!res.ok) return [];
  return res.out.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => n.startsWith(NETNS_PREFIX));
}

/** One pod's network namespace, as the node agent makes it (the sandbox of a real kubelet). */
export class PodNetns {
  readonly name: string;
  private readonly hostVeth: string;

  constructor(podUid: string) {
    this.name = `${NETNS_PREFIX}${podUid}`;
    // Interface names are at most 15 bytes.
    this.hostVeth = `cmv${podUid.replace(/-/g, "").slice(0, 12)}`;
  }

  /** argv that runs `argv` inside the namespace (nsenter execs it: the pid stays the same). */
  wrap(argv: readonly string[]): string[] {
    return [NSENTER, `--net=/run/netns/${this.name}`, "--", ...argv];
  }

  /** Creates the namespace with `lo` up, `eth0` at `address`/16 and a default route via `gateway`. */
  async create(address: string, gateway: string): Promise<void> {
    await this.remove(); // left by an agent that died, with the same pod
    const run = (args: string[]) => execFileAsync(IP, args);
    try {
      await run(["netns", "add", this.name]);
      await run(["link", "add", this.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", this.name]);
      await run(["link", "set", this.hostVeth, "master", BRIDGE, "up"]);
      const inside = ["-n", this.name];
      await run([...inside, "link", "set", "lo", "up"]);
      await run([...inside, "addr", "add", `${address}/16`, "dev", "eth0"]);
      await run([...inside, "link", "set", "eth0", "up"]);
      await run([...inside, "route", "add", "default", "via", gateway]);
    } catch (err) {
      await this.remove();
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new Error(`pod network namespace ${this.name} (${address} on bridge ${BRIDGE}, via ${gateway}): ${stderr || (err as Error).message}`);
    }
  }

  /** Deletes the namespace; its veth pair goes with it. Nothing to do if it is gone. */
  remove(): Promise<void> {
    return deleteNetns(this.name);
  }
}
