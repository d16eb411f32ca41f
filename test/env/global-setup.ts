// vitest globalSetup of the e2e project: one local cluster per run. A cluster that already runs
// (`make cluster-up`) is reused and left running; one started by a test run is stopped, with
// every process it started, by the last test run using it (two runs may overlap on a shared
// machine). CONNMETER_E2E_KEEP_CLUSTER=1 keeps it for debugging.
import type { TestProject } from "vitest/node";
import { clusterUp, releaseCluster } from "./cluster.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin kubeconfig of the local cluster. */
    kubeconfig: string;
  }
}

const log = (line: string) => console.error(line);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const up = await clusterUp(log, undefined, { owner: "e2e" });
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
