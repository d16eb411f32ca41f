// The operator as a process for e2e tests: `node dist/operator/main.js` against the local
// cluster, on ephemeral admin ports read from its log, stopped (or killed) by the test.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { findRepoRoot } from "./config.js";

export interface OperatorProcess {
  readonly child: ChildProcess;
  /** Everything it logged so far. */
  logs(): string;
  /** GET /metrics text. */
  metrics(): Promise<string>;
  /** GET /readyz: status and body. */
  readyz(): Promise<{ status: number; body: string }>;
  /** Its admin ports on 127.0.0.1 (metrics: GET /metrics; health: GET /healthz, /readyz). */
  readonly ports: { metrics: number; health: number };
  /** SIGTERM (graceful: releases the Lease) or SIGKILL (a crash); resolves on exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  readonly exited: Promise<number | null>;
}

export interface OperatorOptions {
  kubeconfig: string;
  /** Watch only this namespace (and hold the Lease there); "" = all namespaces. */
  namespace: string;
  /** The Lease's namespace when it differs from `namespace` (required when watching all). */
  leaderElectionNamespace?: string;
  leaderElect?: boolean;
  token?: string;
  /** Name shown in logs and used as the replica identity's prefix (POD_NAME). */
  name?: string;
}

const running = new Set<OperatorProcess>();

/** Kills every operator started by this file that still runs (an afterEach/afterAll hook). */
export async function stopOperators(): Promise<void> {
  await Promise.all([...running].map((o) => o.stop("SIGKILL")));
}

/** Starts the operator and resolves once both admin servers listen. */
export async function startOperator(o: OperatorOptions): Promise<OperatorProcess> {
  const root = findRepoRoot();
  const leaseNamespace = o.leaderElectionNamespace ?? o.namespace;
  if (!leaseNamespace) throw new Error("startOperator: watching all namespaces needs leaderElectionNamespace");
  const args = [
    join(root, "dist/operator/main.js"), "--kubeconfig", o.kubeconfig, ...(o.namespace ? ["--namespace", o.namespace] : []),
    `--leader-elect=${o.leaderElect ?? false}`, "--leader-election-namespace", leaseNamespace,
    "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0",
  ];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, CONNMETER_ADMIN_TOKEN: o.token ?? "", POD_NAME: o.name ?? "operator" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ports = await new Promise<{ metrics: number; health: number }>((resolve, reject) => {
    const check = () => {
      const m = /metrics on [^:]+:(\d+), health on [^:]+:(\d+)/.exec(out);
      if (m) resolve({ metrics: Number(m[1]), health: Number(m[2]) });
    };
    child.stdout!.on("data", check);
    void exited.then((code) => reject(new Error(`operator exited (${code}) before listening:\n${out}`)));
  });
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  const handle: OperatorProcess = {
    child,
    logs: () => out,
    metrics: async () => (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text(),
    readyz: async () => {
      const res = await fetch(`http://127.0.0.1:${ports.health}/readyz`);
      return { status: res.status, body: await res.text() };
    },
    ports,
    stop,
    exited,
  };
  running.add(handle);
  void exited.then(() => running.delete(handle));
  return handle;
}
