// README.md's "Quick start on your cluster", run as a user runs it: the shell lines are read from
// the README itself (so the two cannot drift) and run one by one with bash, helm and kubectl,
// on whichever cluster the suite runs (kind in CI, where the images come from `make images` and
// are loaded by test/kind/cluster.sh; the local cluster runs connmeter images as processes).
// Then what the first hour on a cluster relies on: the policy turns Ready and counts a real
// client; `helm uninstall` leaves the app's token Secret, so the app's next rollout still
// starts; a reinstall keeps that token, so the sidecars keep taking the operator's pushes.
import type { V1Pod } from "@kubernetes/client-node";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import type { Socket } from "phoenix";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { findRepoRoot } from "../env/config.js";
import { deleteNamespace, describeNamespace, kube, requireBuilt, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { connpolRow, findHelm, kubectlWith, skipWithoutTool } from "../env/helm.js";
import { connected, join as joinChannel, phoenixSocket } from "../support/phoenix-client.js";

const ROOT = findRepoRoot();
/** The names the README uses: its namespaces and release. */
const APP_NS = "chat";
const RELEASE_NS = "connmeter";
const RELEASE = "connmeter";
const skipAll = skipWithoutTool("the README's Quick start (test/e2e/quickstart.test.ts)", findHelm());

/**
 * The shell lines of the README's "Quick start on your cluster" section: the ```sh blocks,
 * continuation lines joined, comments and blank lines left out.
 */
export function quickStartLines(readme: string): string[] {
  const start = readme.indexOf("## Quick start on your cluster");
  if (start < 0) throw new Error("README.md has no \"## Quick start on your cluster\" section");
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const lines: string[] = [];
  for (const block of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let pending = "";
    for (const raw of block[1]!.split("\n")) {
      const line = raw.trim();
      if (!pending && (line === "" || line.startsWith("#"))) continue;
      if (line.endsWith("\\")) {
        pending += `${line.slice(0, -1)} `;
        continue;
      }
      lines.push(pending + line);
      pending = "";
    }
  }
  return lines;
}

const kubeconfig = () => inject("kubeconfig");
const kubectl = (...args: string[]) => kubectlWith(kubeconfig(), args);

/** Runs one README line as a user's shell would (bash, the repository as working directory, helm on PATH). */
function run(line: string): string {
  const helmDir = dirname(findHelm().path!);
  const r = spawnSync("bash", ["-euo", "pipefail", "-c", line], {
    cwd: ROOT, encoding: "utf8", timeout: 300_000,
    env: { ...process.env, KUBECONFIG: kubeconfig(), PATH: `${helmDir}${delimiter}${process.env.PATH ?? ""}` },
  });
  if (r.status !== 0) throw new Error(`README line failed (exit ${r.status ?? r.signal}): ${line}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}


function adminToken(): string {
  return kubectl("get", "secret", "connmeter-admin-token", "-n", APP_NS, "-o", "jsonpath={.data.token}");
}

async function cleanUp(): Promise<void> {
  spawnSync(findHelm().path!, ["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s"], { env: { ...process.env, KUBECONFIG: kubeconfig() }, encoding: "utf8" });
  // A run killed half-way may have left the policy with the operator's finalizer and no operator
  // (the chart's pre-delete hook did not run): its namespace could not be deleted.
  spawnSync("kubectl", ["-n", APP_NS, "patch", "connpol", "chat", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'], { env: { ...process.env, KUBECONFIG: kubeconfig() }, encoding: "utf8" });
  await Promise.all([deleteNamespace(APP_NS, 120_000), deleteNamespace(RELEASE_NS, 120_000)]);
  // The README's first line creates the namespace: it must be gone, not only terminating.
  await waitFor("the namespaces of an earlier run to be gone", async () => {
    const r = spawnSync("kubectl", ["get", "namespace", APP_NS, RELEASE_NS, "-o", "name"], { env: { ...process.env, KUBECONFIG: kubeconfig() }, encoding: "utf8" });
    return r.stdout.trim() === "";
  }, 180_000, { intervalMs: 1000 });
}

const explain = async () => `${await describeNamespace(APP_NS)}\n${await describeNamespace(RELEASE_NS)}\n${kubectl("get", "connpol", "-n", APP_NS, "-o", "yaml")}`;

describe.skipIf(skipAll)("the README's Quick start, line by line", () => {
  const sockets: Socket[] = [];

  beforeAll(async () => {
    requireBuilt("dist/operator/main.js", "dist/sidecar/main.js");
    // A run that failed half-way leaves the README's fixed names behind.
    await cleanUp();
  });

  afterAll(async () => {
    for (const s of sockets.splice(0)) s.disconnect();
    await cleanUp();
  });

  it("reads the commands from README.md", () => {
    const lines = quickStartLines(readFileSync(join(ROOT, "README.md"), "utf8"));
    expect(lines[0]).toBe(`kubectl create namespace ${APP_NS}`);
    expect(lines.some((l) => l.startsWith("helm install connmeter charts/connmeter"))).toBe(true);
    expect(lines.at(-1)).toBe(`kubectl -n ${APP_NS} get connpol`);
  });

  it("works as written: the policy turns Ready and counts a real client within two intervals", async () => {
    const lines = quickStartLines(readFileSync(join(ROOT, "README.md"), "utf8"));
    for (const line of lines) {
      const t0 = Date.now();
      const out = run(line);
      console.log(`e2e quickstart: \`${line}\` (${Date.now() - t0} ms)\n${out.trimEnd()}`);
    }
    const row = await waitFor("kubectl get connpol to show READY True", async () => {
      const r = connpolRow(kubeconfig(), APP_NS);
      return r.READY === "True" ? r : undefined;
    }, 60_000, { explain });
    expect(row).toMatchObject({ NAME: "chat", TARGET: "chat", READY: "True", REASON: "Metered", PODS: "2", REPLICAS: "2" });

    const [pod] = await waitForPodsReady(APP_NS, "app=chat", 2, 60_000) as [V1Pod, V1Pod];
    const socket = phoenixSocket(`http://${pod.status!.podIP}:4001`);
    sockets.push(socket);
    await connected(socket);
    expect(await joinChannel(socket.channel("room:lobby", {}))).toBe("ok");
    await waitFor("kubectl get connpol to count the client", async () => {
      const r = connpolRow(kubeconfig(), APP_NS);
      return r.CONNECTIONS === "1" && r.CHANNELS === "1" ? r : undefined;
    }, 15_000, { explain });
  });

  it("helm uninstall leaves the app's token Secret: the app's next rollout starts; a reinstall keeps the token and the sidecars take its pushes", async () => {
    const token = adminToken();
    expect(token).not.toBe("");
    run(`helm uninstall ${RELEASE} -n ${RELEASE_NS} --wait`);
    expect(adminToken()).toBe(token);
    // The chart's pre-delete hook took the operator's finalizer back: the policy stays deletable.
    expect(kubectl("-n", APP_NS, "get", "connpol", "chat", "-o", "jsonpath={.metadata.finalizers}")).not.toContain("connmeter.io/cleanup");
    kubectl("-n", APP_NS, "rollout", "restart", "deployment/chat");
    kubectl("-n", APP_NS, "rollout", "status", "deployment/chat", "--timeout=180s");

    const install = quickStartLines(readFileSync(join(ROOT, "README.md"), "utf8")).find((l) => l.startsWith("helm install"))!;
    run(install);
    run(`kubectl -n ${RELEASE_NS} rollout status deployment/connmeter-operator --timeout=180s`);
    expect(adminToken()).toBe(token);
    const policy = await waitFor("the reinstalled operator to push to every sidecar", async () => {
      const p = await kube().custom.getNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: APP_NS, plural: "connectionpolicies", name: "chat" }) as {
        status?: { conditions?: { type: string; status: string; reason: string; lastTransitionTime: string }[]; lastUpdateTime?: string };
      };
      const limits = p.status?.conditions?.find((c) => c.type === "LimitsApplied");
      const ready = p.status?.conditions?.find((c) => c.type === "Ready");
      return limits?.status === "True" && ready?.status === "True" && Date.parse(p.status?.lastUpdateTime ?? "") > Date.now() - 15_000 ? p : undefined;
    }, 60_000, { explain });
    expect(policy.status?.conditions?.find((c) => c.type === "LimitsApplied")?.reason).toBe("ConfigAccepted");
  });
});
