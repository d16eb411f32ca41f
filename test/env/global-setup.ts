// vitest globalSetup of the e2e project: one local cluster per run. A cluster that already runs
// (`make cluster-up`) is reused and left running; one started by a test run is stopped, with
// every process it started, by the last test run using it (two runs may overlap on a shared
// machine). CONNMETER_E2E_KEEP_CLUSTER=1 keeps it for debugging.
// CONNMETER_E2E_CLUSTER=kind runs the same suite against the kind cluster `make e2e-kind`
// made (test/kind); it is left as it is.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { clusterUp, releaseCluster } from "./cluster.js";
import { findRepoRoot, isLoopbackPodNet, loadClusterConfig } from "./config.js";
import { e2eCluster, kindKubeconfig, type E2ECluster } from "./e2e-cluster.js";
import { installCrds } from "./kube.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin kubeconfig of the local cluster. */
    kubeconfig: string;
    /** The cluster behind it (CONNMETER_E2E_CLUSTER). */
    cluster: E2ECluster;
  }
}

const log = (line: string) => console.error(line);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = e2eCluster();
  project.provide("cluster", cluster);
  if (cluster === "kind") {
    const kubeconfig = kindKubeconfig();
    if (!existsSync(kubeconfig)) throw new Error(`CONNMETER_E2E_CLUSTER=kind: no kubeconfig at ${kubeconfig}: run \`make e2e-kind\` (or test/kind/cluster.sh up)`);
    log(`e2e: running against the kind cluster (${kubeconfig})`);
    log(`e2e: CRDs established on kind: ${(await installCrds(kubeconfig, join(findRepoRoot(), "crds"))).join(", ")}`);
    project.provide("kubeconfig", kubeconfig);
    return async () => undefined;
  }
  const config = loadClusterConfig();
  if (isLoopbackPodNet(config)) {
    throw new Error(`the e2e suite needs a network namespace per pod (its manifests bind 0.0.0.0 and reach the app on 127.0.0.1, as on a real cluster), ` +
      `but CONNMETER_POD_NET=${config.podNetPrefix} puts pods on the host's network: run it as root (CAP_NET_ADMIN and CAP_SYS_ADMIN) with CONNMETER_POD_NET unset or 198.18`);
  }
  const up = await clusterUp(log, config, { owner: "e2e" });
  log(up.reused ? "e2e: reusing the running cluster" : `e2e: cluster started in ${(up.startupMs / 1000).toFixed(1)} s`);
  project.provide("kubeconfig", up.kubeconfig);
  return async () => {
    if (process.env.CONNMETER_E2E_KEEP_CLUSTER === "1") {
      log("e2e: CONNMETER_E2E_KEEP_CLUSTER=1: leaving the cluster running (`make cluster-down` stops it)");
      return;
    }
    await releaseCluster(log);
  };
}
