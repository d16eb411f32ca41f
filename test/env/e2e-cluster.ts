// Which cluster the e2e suite runs against: CONNMETER_E2E_CLUSTER=local (default: the local
// process cluster of test/env) or kind (a kind cluster made by `make e2e-kind`, see test/kind).
// Read from the environment, so test files can use it while they are collected (skipIf).
import { homedir } from "node:os";
import { join } from "node:path";

export type E2ECluster = "local" | "kind";

export function e2eCluster(): E2ECluster {
  const raw = process.env.CONNMETER_E2E_CLUSTER ?? "local";
  if (raw !== "local" && raw !== "kind") throw new Error(`CONNMETER_E2E_CLUSTER=${raw} is invalid: expected "local" or "kind"`);
  return raw;
}

/** True on the local process cluster: for tests of its node agent or of its processes. */
export const onLocalCluster = (): boolean => e2eCluster() === "local";
/** True on kind: for tests that need a real dataplane (kube-proxy, Services, containers). */
export const onKind = (): boolean => e2eCluster() === "kind";

/** The kind cluster's admin kubeconfig, as test/kind/cluster.sh writes it. */
export function kindKubeconfig(): string {
  if (process.env.CONNMETER_KIND_KUBECONFIG) return process.env.CONNMETER_KIND_KUBECONFIG;
  const cache = process.env.CONNMETER_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "connmeter");
  return join(cache, "kind-state", `kubeconfig-${process.env.CONNMETER_KIND_CLUSTER ?? "connmeter"}`);
}
