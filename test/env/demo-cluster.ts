// The whole connmeter story on the local cluster (`make demo-cluster`): start the cluster if none
// runs (the first run builds Kubernetes), `helm install` the chart, deploy the example app as
// its team wrote it (no sidecar) and a ConnectionPolicy, `kubectl rollout restart` it so the
// operator's webhook injects the sidecar, then drive official phoenix clients in steps and print what
// a user looks at after each: `kubectl get connpol`, the per-topic/pod/node breakdown, replicas
// growing past the target, refusals at the caps with AtCapacity, and a scale-down that keeps the
// busy pods. Cleans up everything it started, also on Ctrl-C.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Socket } from "phoenix";
import type { UsageStatus } from "../../operator/api/types.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";
import { clusterUp, releaseCluster } from "./cluster.js";
import { findRepoRoot } from "./config.js";
import { CHART_DIR, helm } from "./helm.js";

const SYSTEM_NS = "connmeter-demo-system";
const NS = "connmeter-demo";
const RELEASE = "connmeter";
const INTERVAL_S = 2;

let kubeconfig = "";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function kubectl(args: string[], input?: string): string {
  return execFileSync("kubectl", args, { env: { ...process.env, KUBECONFIG: kubeconfig }, encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
}

/** Runs kubectl and prints the command and its output, as a user would see them. */
function show(args: string[]): void {
  console.log(`\n$ kubectl ${args.join(" ")}`);
  console.log(kubectl(args).trimEnd().replace(/^/gm, "  "));
}

function step(title: string): void {
  console.log(`\n${bold(`=== ${title}`)}`);
}

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(500);
  }
}

interface Pod { name: string; ip: string; node: string; ready: boolean; created: string }
function pods(): Pod[] {
  const list = JSON.parse(kubectl(["get", "pods", "-n", NS, "-l", "app=chat", "-o", "json"])) as { items: { metadata: { name: string; creationTimestamp: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { podIP?: string; conditions?: { type: string; status: string }[] } }[] };
  return list.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => ({
    name: p.metadata.name, ip: p.status.podIP ?? "", node: p.spec.nodeName ?? "", created: p.metadata.creationTimestamp,
    ready: (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
  })).sort((a, b) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name));
}

interface Status {
  connections?: number; channels?: number; replicas?: number; desiredReplicas?: number;
  usage?: UsageStatus;
  topics?: { name: string; channels: number; maxChannels?: number }[];
  pods?: { name: string; node?: string; connections?: number; channels?: number; ready: boolean }[];
  nodes?: { name: string; pods: number; connections: number; channels: number }[];
  conditions?: { type: string; status: string; reason: string; message: string }[];
}
const status = (): Status => (JSON.parse(kubectl(["get", "connpol", "chat", "-n", NS, "-o", "json"])) as { status?: Status }).status ?? {};

function breakdown(): void {
  const s = status();
  console.log("\n  status.topics:");
  for (const t of s.topics ?? []) console.log(`    ${t.name.padEnd(14)} ${String(t.channels).padStart(4)} channels${t.maxChannels ? ` (cap ${t.maxChannels})` : ""}`);
  console.log("  status.pods:");
  for (const p of s.pods ?? []) console.log(`    ${p.name.padEnd(26)} ${(p.node ?? "").padEnd(18)} ${String(p.connections ?? "-").padStart(3)} connections ${String(p.channels ?? "-").padStart(3)} channels${p.ready ? "" : " (not ready)"}`);
  console.log("  status.nodes:");
  for (const n of s.nodes ?? []) console.log(`    ${n.name.padEnd(18)} ${n.pods} pod(s) ${String(n.connections).padStart(3)} connections ${String(n.channels).padStart(3)} channels`);
}

function conditions(...types: string[]): void {
  for (const c of status().conditions ?? []) {
    if (types.includes(c.type)) console.log(`  condition ${c.type}=${c.status} (${c.reason}): ${c.message}`);
  }
}

const sockets = new Map<string, Socket[]>();

/** Opens one client through a pod's sidecar and joins `topics`; "refused" when the upgrade gets a 503. */
async function client(pod: Pod, topics: string[]): Promise<{ joined: string[]; refused: string[] } | "refused"> {
  const socket = phoenixSocket(`http://${pod.ip}:4001`);
  try {
    await connected(socket);
  } catch {
    socket.disconnect();
    return "refused";
  }
  sockets.set(pod.name, [...(sockets.get(pod.name) ?? []), socket]);
  const joined: string[] = [];
  const refused: string[] = [];
  for (const topic of topics) {
    const reply = await new Promise<{ ok: boolean; reason?: string }>((resolve) => {
      socket.channel(topic, {}).join(10_000)
        .receive("ok", () => resolve({ ok: true }))
        .receive("error", (r: { reason?: string }) => resolve({ ok: false, reason: r?.reason }))
        .receive("timeout", () => resolve({ ok: false, reason: "timeout" }));
    });
    (reply.ok ? joined : refused).push(reply.ok ? topic : `${topic} (${reply.reason})`);
  }
  return { joined, refused };
}

/** Opens `n` clients through a pod's sidecar; returns how many connected. */
async function clients(pod: Pod, n: number, topics: (i: number) => string[]): Promise<number> {
  let ok = 0, refusedUpgrades = 0, refusedJoins = 0;
  const reasons = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await client(pod, topics(i));
    if (r === "refused") refusedUpgrades++;
    else {
      ok++;
      refusedJoins += r.refused.length;
      for (const x of r.refused) reasons.add(x);
    }
  }
  console.log(`  ${pod.name}: ${ok} connected${refusedUpgrades ? `, ${refusedUpgrades} upgrades refused with 503` : ""}${refusedJoins ? `, ${refusedJoins} joins refused: ${[...reasons].join(", ")}` : ""}`);
  return ok;
}

function close(pod: Pod, keep: number): void {
  const list = sockets.get(pod.name) ?? [];
  for (const s of list.splice(keep)) s.disconnect();
  console.log(`  ${pod.name}: closed clients down to ${list.length}`);
}

const connpolShows = (connections: number) => until(`kubectl get connpol to show ${connections} connections`, () => status().connections === connections, 30_000);

async function story(): Promise<void> {
  step(`Install the chart: helm install ${RELEASE} charts/connmeter -n ${SYSTEM_NS}`);
  kubectl(["create", "namespace", SYSTEM_NS]);
  kubectl(["create", "namespace", NS]);
  helm(["install", RELEASE, CHART_DIR, "--namespace", SYSTEM_NS, "--wait", "--timeout", "180s",
    "--set", `operator.watchNamespace=${NS},adminToken.extraNamespaces={${NS}},image.tag=dev,injection.sidecar.image.tag=dev`], { env: { KUBECONFIG: kubeconfig }, timeoutMs: 240_000 });
  show(["get", "pods,lease", "-n", SYSTEM_NS]);

  step("Deploy the example app as its team wrote it (charts/connmeter/examples/demo-app-plain.yaml: no sidecar, Service targetPort http) and a ConnectionPolicy");
  kubectl(["apply", "-n", NS, "-f", "-"], readFileSync(join(CHART_DIR, "examples/demo-app-plain.yaml"), "utf8").replaceAll(":0.1.0", ":dev"));
  const policy = `apiVersion: connmeter.io/v1alpha1
kind: ConnectionPolicy
metadata: {name: chat}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: chat}
  scrapeIntervalSeconds: ${INTERVAL_S}
  topics:
    - {match: "room:lobby", maxChannels: 10}
    - {match: "room:*"}
  limits: {maxConnectionsPerPod: 8, rejectAtPercent: 100, maxConnections: 20}
  scaling: {minReplicas: 2, maxReplicas: 3, targetConnectionsPerPod: 4, scaleDownStabilizationSeconds: 10}
`;
  console.log(policy.replace(/^/gm, "  "));
  await until("2 ready pods of the example app", () => pods().filter((p) => p.ready).length === 2 && pods(), 120_000);
  kubectl(["apply", "-n", NS, "-f", "-"], policy);
  await until("the policy to list the pods without the sidecar", () => status().conditions?.some((x) => x.type === "Injected" && x.reason === "PodsWithoutSidecar"), 30_000);
  show(["get", "connpol", "-n", NS]);
  conditions("Injected");

  step("Restart the app: the operator's webhook injects the sidecar and takes over the Service's port name");
  console.log("\n$ kubectl rollout restart deployment/chat");
  kubectl(["rollout", "restart", "deployment/chat", "-n", NS]);
  await until("2 ready pods, all with the sidecar", () => {
    const list = pods();
    const injected = kubectl(["get", "pods", "-n", NS, "-l", "app=chat", "-o", String.raw`jsonpath={range .items[*]}{.metadata.name}={.spec.initContainers[*].name}{"\n"}{end}`]);
    return list.length === 2 && list.every((p) => p.ready && injected.includes(`${p.name}=connmeter`));
  }, 120_000);
  await until("the policy's status with 2 metered pods", () => status().replicas === 2 && status().conditions?.some((x) => x.type === "Ready" && x.status === "True"), 60_000);
  show(["get", "pods", "-n", NS, "-o", "wide"]);
  show(["get", "pods", "-n", NS, "-l", "app=chat", "-o", String.raw`custom-columns=POD:.metadata.name,SIDECAR:.spec.initContainers[*].name,SIDECAR-PORTS:.spec.initContainers[*].ports[*].name,APP-PORTS:.spec.containers[*].ports[*].name`]);
  show(["get", "connpol", "-n", NS]);
  const [a, b] = pods() as [Pod, Pod];

  step("Step 1: 6 phoenix clients, 3 per pod, each joins room:lobby and room:<n>");
  await clients(a, 3, (i) => ["room:lobby", `room:${i}`]);
  await clients(b, 3, (i) => ["room:lobby", `room:${i + 3}`]);
  await connpolShows(6);
  show(["get", "connpol", "-n", NS]);
  breakdown();

  step("Step 2: 8 more clients (14 > 2 pods x target 4): the operator scales up, clamped at maxReplicas 3; room:lobby is capped at 10 channels");
  await clients(a, 4, (i) => ["room:lobby", `room:${i + 10}`]);
  await clients(b, 4, (i) => ["room:lobby", `room:${i + 20}`]);
  await connpolShows(14);
  await until("3 ready pods", () => pods().filter((p) => p.ready).length === 3, 120_000);
  await until("the status to count 3 replicas", () => status().replicas === 3, 30_000);
  show(["get", "connpol", "-n", NS]);
  conditions("ScalingActive", "ScalingLimited");
  breakdown();

  step("Step 3: clients pile onto the new pod until the cluster cap (maxConnections 20): the sidecars refuse the rest with 503");
  const c = pods().find((p) => p.name !== a.name && p.name !== b.name)!;
  await until("the new pod to get its budget", () => status().pods?.some((p) => p.name === c.name), 30_000);
  await sleep(INTERVAL_S * 1000);
  const accepted = await clients(c, 10, (i) => [`room:${i + 30}`]);
  await connpolShows(14 + accepted);
  await until("AtCapacity=True", () => status().conditions?.some((x) => x.type === "AtCapacity" && x.status === "True"), 30_000);
  show(["get", "connpol", "-n", NS]);
  const cap = (status() as { capacity?: { maxConnections: number; connections: number; usedPercent: number } }).capacity;
  if (cap) console.log(`  status.capacity: ${cap.connections} of maxConnections ${cap.maxConnections} (${cap.usedPercent} %); the rest of the cap is the busy pods' budgets`);
  conditions("AtCapacity");
  show(["get", "events", "-n", NS, "--field-selector", "involvedObject.kind=ConnectionPolicy"]);

  step(`Step 4: the clients of ${b.name} leave, and some of ${a.name}'s and ${c.name}'s: the operator scales down to 2 after the 10 s window, removing the empty pod`);
  console.log("  (the ReplicaSet would remove the newest pod by default; pod-deletion-cost makes it remove the emptiest)");
  close(b, 0);
  close(a, 3);
  close(c, 3);
  await connpolShows(6);
  show(["get", "connpol", "-n", NS]);
  // The costs are written just before the replicas drop, and the emptiest pod may be gone a
  // moment later (at once on the local cluster): a watch sees every version of every pod, a poll
  // would miss them.
  const costs = new Map<string, string>();
  const watch = spawn("kubectl", ["get", "pods", "-n", NS, "-l", "app=chat", "--watch", "--output-watch-events=false",
    "-o", String.raw`jsonpath={.metadata.name}{" "}{.metadata.annotations.controller\.kubernetes\.io/pod-deletion-cost}{"\n"}`],
  { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ["ignore", "pipe", "ignore"] });
  createInterface({ input: watch.stdout }).on("line", (line) => {
    const [name, cost] = line.trim().split(" ");
    if (name && cost) costs.set(name, cost);
  });
  try {
    await until("the operator to lower the Deployment's replicas", () => kubectl(["get", "deployment", "chat", "-n", NS, "-o", "jsonpath={.spec.replicas}"]) === "2", 90_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    watch.kill();
  }
  console.log("\n  controller.kubernetes.io/pod-deletion-cost set by the operator before the scale-down (connections held):");
  const now = new Set(pods().map((p) => p.name));
  for (const p of [a, b, c]) console.log(`    ${p.name.padEnd(26)} created ${p.created}  cost ${costs.get(p.name) ?? "(none: its connections were unknown)"}${now.has(p.name) ? "" : "  -> removed"}`);
  await until("2 pods left", () => pods().length === 2, 90_000);
  await until("the status to count 2 replicas", () => status().replicas === 2, 30_000);
  const left = pods().map((p) => p.name);
  show(["get", "connpol", "-n", NS]);
  breakdown();
  const stillConnected = [a, c].flatMap((p) => sockets.get(p.name) ?? []).filter((s) => s.isConnected()).length;
  console.log(`\n  pods left: ${left.join(", ")}; ${b.name} (empty) is gone; ${stillConnected} of 6 remaining clients are still connected`);

  // --- usage (issue 18) ---
  step("Step 5: usage so far: status.usage since 00:00 UTC, summed from the sidecars' counters (kubectl get connpol -o wide)");
  show(["get", "connpol", "-n", NS, "-o", "wide"]);
  const u = status().usage;
  const groups = (u?.groups ?? []).map((g) => `${g.name} ${(g.channelSeconds / 3600).toFixed(3)} h`).join(", ");
  console.log(`  status.usage: ${((u?.connectionSeconds ?? 0) / 3600).toFixed(3)} connection-hours today (${u?.connectionSeconds ?? 0} s), peak ${u?.peakConnections ?? 0} connections; channel-hours: ${groups || "none yet"}`);
  // --- end usage ---
}

async function cleanup(): Promise<void> {
  step("Cleaning up what the demo started");
  for (const list of sockets.values()) for (const s of list) s.disconnect();
  try {
    helm(["uninstall", RELEASE, "--namespace", SYSTEM_NS, "--wait"], { env: { KUBECONFIG: kubeconfig } });
  } catch {
    // not installed
  }
  try {
    kubectl(["delete", "namespace", NS, SYSTEM_NS, "--ignore-not-found", "--wait=true", "--timeout=120s"]);
  } catch (err) {
    console.error(`demo: deleting the namespaces: ${(err as Error).message}`);
  }
  if (ON_KIND) {
    if (kindStartedByDemo) {
      kindScript("cluster.sh", "down");
      console.log("  the kind cluster the demo created is deleted (and the dockerd it started stopped)");
    } else {
      console.log("  the kind cluster was running before the demo: left running (`make e2e-kind-down` removes it)");
    }
    return;
  }
  const stopped = await releaseCluster((l) => console.error(l));
  console.log(stopped ? "  the local cluster the demo started is stopped" : "  the local cluster was running before the demo (or is used by a test run): left running");
}

/** `make demo CLUSTER=kind`: the same story on kind (test/kind builds what cannot be pulled). */
const ON_KIND = process.env.CLUSTER === "kind";
let kindStartedByDemo = false;

/** Runs one of test/kind's scripts with its progress on our stderr; returns its stdout. */
function kindScript(script: string, ...args: string[]): string {
  const res = spawnSync("bash", [join(findRepoRoot(), "test/kind", script), ...args], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  if (res.status !== 0) throw new Error(`test/kind/${script} ${args.join(" ")} exited ${res.status ?? res.signal}`);
  return res.stdout;
}

function kindClusterRuns(): boolean {
  const res = spawnSync("docker", ["ps", "-q", "--filter", `label=io.x-k8s.kind.cluster=${process.env.CONNMETER_KIND_CLUSTER ?? "connmeter"}`], { encoding: "utf8" });
  return res.status === 0 && res.stdout.trim() !== "";
}

async function kindUp(): Promise<string> {
  step("kind cluster (test/kind): a Docker engine, the images from docker/Dockerfile, the cluster (first run builds the node image offline: about 25 min, progress below)");
  kindScript("engine.sh", "up");
  kindStartedByDemo = !kindClusterRuns();
  kindScript("images.sh");
  return kindScript("cluster.sh", "up").trim().split("\n").at(-1)!;
}

async function main(): Promise<void> {
  if (ON_KIND) {
    kubeconfig = await kindUp();
  } else {
    step("Local Kubernetes cluster (test/env): reused if running; the first run builds Kubernetes v1.35 from source (10-25 min, progress below)");
    kubeconfig = (await clusterUp((l) => console.error(l), undefined, { owner: "e2e" })).kubeconfig;
  }
  let interrupted = false;
  process.once("SIGINT", () => {
    interrupted = true;
    void cleanup().finally(() => process.exit(130));
  });
  let failed = false;
  try {
    await story();
  } catch (err) {
    failed = true;
    console.error(`demo: ${(err as Error).stack ?? String(err)}`);
  } finally {
    if (!interrupted) await cleanup();
  }
  // Clients closed by the server keep a reconnect timer: exit rather than wait for it.
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(`demo: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
