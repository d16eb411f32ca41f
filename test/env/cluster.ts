// The local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the connmeter node agent (pods as local processes, each pod in its own
// network namespace: pod-network.ts), state under .local/cluster/. `clusterUp` starts it (or
// reuses a running one), `clusterDown` stops exactly the processes it started and removes
// their data.
import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { join, relative } from "node:path";
import { K8S_VERSION, apiserverHost, loadClusterConfig, nodeAddress, nodeName, statePaths, type ClusterConfig } from "./config.js";
import { apiserverArgs, controllerManagerArgs, etcdArgs, schedulerArgs } from "./component-flags.js";
import { writeKubeconfig } from "./kubeconfig.js";
import { ensurePodNetwork, removePodNetwork, type PodNetRecord } from "./pod-network.js";
import { LocalCa, choosePkiBackend, writeServiceAccountKeys } from "./pki.js";
import { isAlive, processStartTicks, spawnDaemon, stopProcess, stopRecordedProcesses, type ProcessRecord } from "./procs.js";

/** What state.json holds while a cluster runs. */
export interface ClusterState {
  readonly version: 1;
  readonly startedAt: string;
  readonly server: string;
  readonly kubeconfig: string;
  readonly binDir: string;
  /**
   * Who wants the cluster kept: "cluster-up" (kept until cluster-down) or "e2e" (a test run
   * started it: the last test run using it stops it).
   */
  startedBy?: "cluster-up" | "e2e";
  /** The pod network, and what cluster-up added for it (and so cluster-down removes). */
  podNet?: PodNetRecord;
  readonly processes: ProcessRecord[];
}

export type Log = (line: string) => void;

export interface UpResult {
  readonly kubeconfig: string;
  readonly server: string;
  /** True if a running cluster was found and reused. */
  readonly reused: boolean;
  readonly startupMs: number;
}

const COMPONENT_ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent"] as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads state.json, or undefined if no cluster was started. */
export function readState(config: ClusterConfig = loadClusterConfig()): ClusterState | undefined {
  const file = statePaths(config).state;
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, "utf8")) as ClusterState;
}

function writeState(config: ClusterConfig, state: ClusterState): void {
  const file = statePaths(config).state;
  writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${file}.tmp`, file);
}

/** Names of the recorded processes that are no longer running. */
export function deadComponents(state: ClusterState): string[] {
  return state.processes.filter((p) => !isAlive(p)).map((p) => p.name);
}

// --- lock: one cluster-up/down at a time per state directory ---

async function withLock<T>(config: ClusterConfig, log: Log, fn: () => Promise<T>): Promise<T> {
  const lock = statePaths(config).lock;
  mkdirSync(config.stateDir, { recursive: true });
  let announced = false;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "owner"), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(join(lock, "owner"), { encoding: "utf8", flag: "a+" }) || 0);
      if (!owner || !pidExists(owner)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (!announced) log(`cluster: waiting for another cluster-up/down (pid ${owner}) to finish`);
      announced = true;
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// --- binaries and the compiled node agent ---

/** Runs build-k8s.sh (which builds once, then only prints the cached directory). */
export function ensureBinaries(config: ClusterConfig, log: Log): string {
  const script = join(config.repoRoot, "test/env/build-k8s.sh");
  log(`cluster: locating Kubernetes ${K8S_VERSION} binaries (test/env/build-k8s.sh; the first build takes ~10-25 min)`);
  const res = spawnSync("bash", [script], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  const dir = res.stdout.trim().split("\n").pop() ?? "";
  if (res.status !== 0 || !dir) {
    throw new Error(
      `kube-apiserver not found and building it failed (exit ${res.status}): see the output above; ` +
        "run `make cluster-up`, which builds it, or set CONNMETER_K8S_BIN to a directory holding " +
        "etcd, kube-apiserver, kube-controller-manager and kube-scheduler",
    );
  }
  return dir;
}

/** The compiled node agent entry; compiles test/env (only) when a source is newer than its output. */
export function ensureAgentCompiled(config: ClusterConfig, log: Log): string {
  const srcDir = join(config.repoRoot, "test/env");
  const outDir = join(config.repoRoot, "dist/test/env");
  const stale = listTs(srcDir).some((src) => {
    const out = join(outDir, relative(srcDir, src)).replace(/\.ts$/, ".js");
    return !existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs;
  });
  if (stale) {
    log("cluster: compiling test/env (node agent) into dist/test/env");
    const tsc = join(config.repoRoot, "node_modules/typescript/bin/tsc");
    const res = spawnSync(process.execPath, [tsc, "-p", join(srcDir, "tsconfig.json")], { encoding: "utf8" });
    if (res.status !== 0) {
      throw new Error(`compiling test/env failed (run \`npx tsc -p test/env/tsconfig.json\`):\n${res.stdout}${res.stderr}`);
    }
  }
  return join(outDir, "node-agent-main.js");
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) { if (entry.name !== "k8s") out.push(...listTs(p)); }
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") && !entry.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

// --- readiness checks ---

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

async function checkPorts(config: ClusterConfig): Promise<void> {
  const wanted: [string, number, string][] = [
    ["etcd client", config.etcdClientPort, "CONNMETER_ETCD_PORT"],
    ["etcd peer", config.etcdPeerPort, "CONNMETER_ETCD_PORT"],
    ["kube-apiserver", config.apiserverPort, "CONNMETER_APISERVER_PORT"],
  ];
  for (const [what, port, env] of wanted) {
    // The API server listens on the pod network's gateway, which may not exist yet: a port free
    // on every address is free there too.
    const host = what === "kube-apiserver" ? "0.0.0.0" : "127.0.0.1";
    if (!(await portFree(port, host))) {
      throw new Error(`port ${host}:${port} (${what}) is in use: stop what holds it or set ${env} to another port`);
    }
  }
}

interface TlsClient { ca: Buffer; cert: Buffer; key: Buffer }

function httpsGet(url: string, tls: TlsClient, timeoutMs = 2_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...tls, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

async function waitUntil(what: string, timeoutMs: number, rec: ProcessRecord | undefined, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    if (rec && !isAlive(rec)) throw new Error(`${rec.name} exited while waiting for ${what}:\n${tail(rec.log)}`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}` +
        (rec ? `\n${tail(rec.log)}` : ""));
    }
    await sleep(200);
  }
}

function tail(file: string, lines = 25): string {
  try {
    const text = readFileSync(file, "utf8").trimEnd().split("\n");
    return `--- last ${Math.min(lines, text.length)} lines of ${file} ---\n${text.slice(-lines).join("\n")}`;
  } catch {
    return `(no log at ${file})`;
  }
}

// --- up ---

export interface UpOptions {
  /** "e2e": a test run that registers as a user and releases the cluster with `releaseCluster`. */
  readonly owner?: "cluster-up" | "e2e";
}

/**
 * Starts the local cluster, or reuses the running one. Writes the admin kubeconfig to
 * `.local/kubeconfig` (config.kubeconfigPath) and returns its path.
 */
export async function clusterUp(log: Log = console.error, config: ClusterConfig = loadClusterConfig(), opts: UpOptions = {}): Promise<UpResult> {
  const owner = opts.owner ?? "cluster-up";
  return withLock(config, log, async () => {
    const t0 = Date.now();
    const existing = readState(config);
    if (existing) {
      const dead = deadComponents(existing);
      if (dead.length === 0 && (await apiserverReady(config))) {
        log(`cluster: already running since ${existing.startedAt} (${existing.server}); reusing it`);
        // The running cluster may predate a change of crds/: apply them again (cheap, idempotent).
        const { installCrds } = await import("./kube.js");
        await installCrds(existing.kubeconfig, join(config.repoRoot, "crds"));
        // Asked for by `make cluster-up`: from now on only cluster-down stops it.
        if (owner === "cluster-up" && existing.startedBy !== "cluster-up") writeState(config, { ...existing, startedBy: "cluster-up" });
        if (owner === "e2e") registerUser(config);
        return { kubeconfig: existing.kubeconfig, server: existing.server, reused: true, startupMs: Date.now() - t0 };
      }
      log(`cluster: found a broken cluster (${dead.length ? `not running: ${dead.join(", ")}` : "API server not ready"}); stopping what is left and starting afresh`);
      await stopAll(config, existing, log);
    }
    const binDir = ensureBinaries(config, log);
    const agentMain = ensureAgentCompiled(config, log);
    const tStart = Date.now();
    await checkPorts(config);
    const state = await startAll(config, binDir, agentMain, log, owner);
    if (owner === "e2e") registerUser(config);
    const startupMs = Date.now() - tStart;
    log(`cluster: ready in ${(startupMs / 1000).toFixed(1)} s (${((Date.now() - t0) / 1000).toFixed(1)} s with the binary and compile checks); kubeconfig: ${state.kubeconfig}`);
    log(`cluster: try \`KUBECONFIG=${relative(process.cwd(), state.kubeconfig) || state.kubeconfig} kubectl get nodes\``);
    return { kubeconfig: state.kubeconfig, server: state.server, reused: false, startupMs };
  });
}

/** Records this process as a user of the cluster (`users/<pid>.json`). */
function registerUser(config: ClusterConfig): void {
  const dir = statePaths(config).users;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, startTicks: processStartTicks(process.pid) }));
}

/** Users other than this process that still run. */
function otherLiveUsers(config: ClusterConfig): number[] {
  const dir = statePaths(config).users;
  if (!existsSync(dir)) return [];
  const live: number[] = [];
  for (const f of readdirSync(dir)) {
    try {
      const rec = JSON.parse(readFileSync(join(dir, f), "utf8")) as { pid: number; startTicks: number };
      if (rec.pid !== process.pid && isAlive(rec)) live.push(rec.pid);
    } catch { /* half-written: ignore */ }
  }
  return live;
}

/**
 * A test run is done with the cluster: stops it if a test run started it and no other test
 * run still uses it. Returns whether it was stopped.
 */
export async function releaseCluster(log: Log = console.error, config: ClusterConfig = loadClusterConfig()): Promise<boolean> {
  return withLock(config, log, async () => {
    rmSync(join(statePaths(config).users, `${process.pid}.json`), { force: true });
    const state = readState(config);
    if (!state || state.startedBy !== "e2e") return false;
    const others = otherLiveUsers(config);
    if (others.length) {
      log(`cluster: still used by test run(s) ${others.join(", ")}; the last one stops it`);
      return false;
    }
    await stopAll(config, state, log);
    return true;
  });
}

async function apiserverReady(config: ClusterConfig): Promise<boolean> {
  try {
    const res = await httpsGet(`https://${apiserverHost(config)}:${config.apiserverPort}/readyz`, adminTls(config));
    return res.status === 200;
  } catch {
    return false;
  }
}

function adminTls(config: ClusterConfig): TlsClient {
  const pki = statePaths(config).pki;
  return {
    ca: readFileSync(join(pki, "ca.crt")),
    cert: readFileSync(join(pki, "admin.crt")),
    key: readFileSync(join(pki, "admin.key")),
  };
}

/** The `kubernetes` Service's ClusterIP: the first address of the service range. */
function firstServiceIp(cidr: string): string {
  const octets = cidr.split("/")[0]!.split(".").map(Number);
  octets[3] = octets[3]! + 1;
  return octets.join(".");
}

function makePki(config: ClusterConfig, log: Log): LocalCa {
  const paths = statePaths(config);
  rmSync(paths.pki, { recursive: true, force: true });
  const backend = choosePkiBackend();
  log(`cluster: generating CA and certificates (${backend === "openssl" ? "openssl" : "Node crypto"})`);
  const ca = LocalCa.create(paths.pki, backend);
  const nodeIps = Array.from({ length: config.nodeCount }, (_, i) => nodeAddress(config, i + 1));
  ca.issue({
    name: "apiserver", commonName: "kube-apiserver", server: true,
    altNames: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
      "kubernetes.default.svc.cluster.local", "127.0.0.1", apiserverHost(config), firstServiceIp(config.serviceCidr)],
  });
  ca.issue({ name: "admin", commonName: "connmeter-admin", organizations: ["system:masters"], client: true });
  ca.issue({ name: "controller-manager", commonName: "system:kube-controller-manager", client: true });
  ca.issue({ name: "scheduler", commonName: "system:kube-scheduler", client: true });
  // The agent acts for several nodes at once, so it cannot use one system:node identity.
  ca.issue({ name: "node-agent", commonName: "connmeter-node-agent", organizations: ["system:masters"], client: true });
  ca.issue({ name: "apiserver-kubelet-client", commonName: "kube-apiserver-kubelet-client", organizations: ["system:masters"], client: true });
  ca.issue({ name: "kubelet", commonName: "connmeter-kubelet", server: true, altNames: ["localhost", ...nodeIps] });
  writeServiceAccountKeys(paths.pki);
  return ca;
}

async function startAll(config: ClusterConfig, binDir: string, agentMain: string, log: Log, owner: "cluster-up" | "e2e"): Promise<ClusterState> {
  const paths = statePaths(config);
  for (const d of [paths.etcdData, paths.containers, paths.pods, paths.kubeconfigs]) rmSync(d, { recursive: true, force: true });
  for (const d of [paths.logs, paths.kubeconfigs, paths.containers, paths.pods]) mkdirSync(d, { recursive: true });
  const server = `https://${apiserverHost(config)}:${config.apiserverPort}`;
  const state: ClusterState = {
    version: 1, startedAt: new Date().toISOString(), server, kubeconfig: config.kubeconfigPath, binDir, startedBy: owner, processes: [],
  };
  writeState(config, state);
  const pki = (f: string) => join(paths.pki, f);
  const kubeconfigFor = (name: string, user: string) => {
    const file = join(paths.kubeconfigs, `${name}.kubeconfig`);
    writeKubeconfig(file, { server, caFile: pki("ca.crt"), user, certFile: pki(`${name}.crt`), keyFile: pki(`${name}.key`) });
    return file;
  };
  const start = (name: string, command: string[], env?: NodeJS.ProcessEnv): ProcessRecord => {
    const log = join(paths.logs, `${name}.log`);
    writeFileSync(log, `# ${new Date().toISOString()} ${command.join(" ")}\n`);
    const rec = spawnDaemon(name, command, { log, env, cwd: config.repoRoot });
    state.processes.push(rec);
    writeState(config, state);
    return rec;
  };
  try {
    makePki(config, log);
    state.podNet = ensurePodNetwork(config, log);
    writeState(config, state);
    const bin = (n: string) => join(binDir, n);
    log("cluster: starting etcd");
    const etcd = start("etcd", [bin("etcd"), ...etcdArgs(config)]);
    await waitUntil("etcd", 30_000, etcd, async () => {
      const res = await fetch(`http://127.0.0.1:${config.etcdClientPort}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === "true";
    });
    log("cluster: starting kube-apiserver");
    const apiserver = start("kube-apiserver", [bin("kube-apiserver"), ...apiserverArgs(config, pki)]);
    const tls = adminTls(config);
    await waitUntil("kube-apiserver /readyz", 90_000, apiserver, async () => (await httpsGet(`${server}/readyz`, tls)).status === 200);
    writeKubeconfig(config.kubeconfigPath, {
      server, caFile: pki("ca.crt"), user: "connmeter-admin", certFile: pki("admin.crt"), keyFile: pki("admin.key"), embed: true,
    });
    log("cluster: starting kube-controller-manager, kube-scheduler and the node agent");
    start("kube-controller-manager", [bin("kube-controller-manager"), ...controllerManagerArgs(config, pki, kubeconfigFor("controller-manager", "system:kube-controller-manager"))]);
    start("kube-scheduler", [bin("kube-scheduler"), ...schedulerArgs(kubeconfigFor("scheduler", "system:kube-scheduler"))]);
    start("node-agent", [process.execPath, "--enable-source-maps", agentMain, "--kubeconfig", kubeconfigFor("node-agent", "connmeter-node-agent")],
      { ...process.env, CONNMETER_CLUSTER_DIR: config.stateDir, CONNMETER_POD_NET: config.podNetPrefix });
    const { installCrds, waitForClusterServing } = await import("./kube.js");
    log("cluster: installing CRDs from crds/");
    const installed = await installCrds(config.kubeconfigPath, join(config.repoRoot, "crds"));
    log(`cluster: CRDs established: ${installed.join(", ")}`);
    await waitForClusterServing(config.kubeconfigPath, Array.from({ length: config.nodeCount }, (_, i) => nodeName(i + 1)), 60_000, () => {
      const dead = deadComponents(state);
      if (dead.length) throw new Error(`${dead.join(", ")} exited:\n${dead.map((n) => tail(join(paths.logs, `${n}.log`))).join("\n")}`);
    });
    return state;
  } catch (err) {
    log(`cluster: start failed; stopping what was started (logs stay in ${paths.logs})`);
    await stopAll(config, state, log);
    throw err;
  }
}

/**
 * Stops kube-apiserver and starts it again with the same command (an API server restart, as
 * in an upgrade); resolves once it is ready again. For e2e tests of clients' resilience.
 * `downMs` keeps it stopped that long first.
 */
export async function restartApiserver(downMs = 0, log: Log = console.error, config: ClusterConfig = loadClusterConfig()): Promise<void> {
  await withLock(config, log, async () => {
    const state = readState(config);
    const rec = state?.processes.find((p) => p.name === "kube-apiserver");
    if (!state || !rec) throw new Error("no running local cluster with a kube-apiserver to restart");
    await stopProcess(rec, 10_000);
    await sleep(downMs);
    appendFileSync(rec.log, `# ${new Date().toISOString()} restarted\n`);
    const next = spawnDaemon(rec.name, rec.command, { log: rec.log, cwd: config.repoRoot });
    writeState(config, { ...state, processes: state.processes.map((p) => (p === rec ? next : p)) });
    await waitUntil("kube-apiserver /readyz after a restart", 90_000, next, async () => (await httpsGet(`${state.server}/readyz`, adminTls(config))).status === 200);
  });
}

// --- down ---

/** Stops the cluster started by clusterUp (exactly its processes) and removes its data. */
export async function clusterDown(log: Log = console.error, config: ClusterConfig = loadClusterConfig()): Promise<{ stopped: string[] }> {
  return withLock(config, log, async () => {
    const state = readState(config);
    if (!state) {
      log("cluster: not running (no .local/cluster/state.json)");
      return { stopped: [] };
    }
    return { stopped: await stopAll(config, state, log) };
  });
}

async function stopAll(config: ClusterConfig, state: ClusterState, log: Log): Promise<string[]> {
  const paths = statePaths(config);
  const stopped: string[] = [];
  const order = [...COMPONENT_ORDER].reverse();
  const byOrder = [...state.processes].sort((a, b) => order.indexOf(a.name as never) - order.indexOf(b.name as never));
  for (const rec of byOrder) {
    // The agent stops its containers on SIGTERM: give it their grace time.
    const how = await stopProcess(rec, rec.name === "node-agent" ? 20_000 : 10_000);
    if (how !== "gone") stopped.push(rec.name);
    log(`cluster: ${rec.name} (pid ${rec.pid}) ${how}`);
  }
  const leftovers = await stopRecordedProcesses(paths.containers, 2_000);
  if (leftovers) log(`cluster: stopped ${leftovers} container process(es) the node agent left behind`);
  await removePodNetwork(state.podNet, log);
  const keep = join(config.stateDir, "..", "cluster-last-logs");
  rmSync(keep, { recursive: true, force: true });
  if (existsSync(paths.logs)) renameSync(paths.logs, keep);
  for (const d of [paths.etcdData, paths.pki, paths.kubeconfigs, paths.containers, paths.pods, paths.users, paths.state]) {
    rmSync(d, { recursive: true, force: true });
  }
  if (existsSync(config.kubeconfigPath)) rmSync(config.kubeconfigPath);
  if (existsSync(paths.containers)) rmSync(paths.containers, { recursive: true, force: true });
  log(`cluster: data removed; logs of this run kept in ${keep}`);
  return stopped;
}

/** For diagnostics: `kubectl`-free view of what runs. */
export function describeState(config: ClusterConfig = loadClusterConfig()): string {
  const state = readState(config);
  if (!state) return "cluster: not running";
  const lines = state.processes.map((p) => `  ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${isAlive(p) ? "running" : "NOT RUNNING"}  log ${p.log}`);
  return [`cluster: started ${state.startedAt}, API server ${state.server}, kubeconfig ${state.kubeconfig}`, ...lines].join("\n");
}

/** Used by the CLI: the version of the binaries in use. */
export function binaryVersion(binDir: string): string {
  return execFileSync(join(binDir, "kube-apiserver"), ["--version"], { encoding: "utf8" }).trim();
}
