// The pod network: node n is `<prefix>.<n>.1`, its pods `<prefix>.<n>.2-254`. Loopback
// prefixes (127/8) need nothing; any other /16 is made local with a route on `lo`, which
// cluster-down removes again if cluster-up added it.
import { spawnSync } from "node:child_process";
import { isLoopbackPodNet, type ClusterConfig } from "./config.js";

type Log = (line: string) => void;

/**
 * Pods on a non-loopback prefix need it to be local: `ip route add local <prefix>.0.0/16 dev lo`
 * (the kernel then accepts any address of it, like 127/8). Returns whether the route was added.
 */
export function ensurePodRoute(config: ClusterConfig, log: Log): boolean {
  if (isLoopbackPodNet(config)) {
    log(`cluster: pods get loopback addresses ${config.podNetPrefix}.<node>.<n>; EndpointSlices stay empty (the API server refuses loopback endpoints). Run as root or set CONNMETER_POD_NET=198.18 for routable ones`);
    return false;
  }
  const cidr = `${config.podNetPrefix}.0.0/16`;
  const existing = spawnSync("ip", ["-o", "route", "show", "table", "local", cidr], { encoding: "utf8" });
  if (existing.status === 0 && existing.stdout.includes("dev lo")) {
    log(`cluster: pods get addresses ${config.podNetPrefix}.<node>.<n> (route local ${cidr} dev lo already present)`);
    return false;
  }
  const res = spawnSync("ip", ["route", "add", "local", cidr, "dev", "lo"], { encoding: "utf8" });
  if (res.status !== 0) {
    throw new Error(`cannot make ${cidr} local for pod addresses (\`ip route add local ${cidr} dev lo\` failed: ` +
      `${(res.stderr || res.error?.message || "").trim()}): run as root, or set CONNMETER_POD_NET=127.10 for loopback pod addresses`);
  }
  log(`cluster: pods get addresses ${config.podNetPrefix}.<node>.<n> (added route local ${cidr} dev lo; cluster-down removes it)`);
  return true;
}

export function removePodRoute(podNet: { prefix: string; routeAdded: boolean } | undefined, log: Log): void {
  if (!podNet?.routeAdded) return;
  const cidr = `${podNet.prefix}.0.0/16`;
  const res = spawnSync("ip", ["route", "del", "local", cidr, "dev", "lo"], { encoding: "utf8" });
  log(res.status === 0 ? `cluster: removed route local ${cidr}` : `cluster: could not remove route local ${cidr}: ${res.stderr.trim()}`);
}
