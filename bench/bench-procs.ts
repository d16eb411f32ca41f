// Processes of the benchmark: the app, the sidecar, nginx and the load workers. Every child is
// tracked so the driver can end exactly the processes it started, by pid, whatever happens;
// /proc readers give their resident memory, CPU time and open file descriptors.
import { type ChildProcess, fork, spawn } from "node:child_process";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { WorkerCommand, WorkerReport } from "./bench-protocol.js";

const CLOCK_TICKS_PER_SECOND = 100;
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE = process.execPath;
/**
 * The runtime of the sidecar under test (BENCH_SIDECAR_NODE, default this Node): only the
 * proxy changes runtime, the app, load workers and nginx stay the same, so two runs compare
 * runtimes on equal terms.
 */
export const SIDECAR_NODE = process.env.BENCH_SIDECAR_NODE || NODE;
/** The V8 flags the sidecar ships with (docker/Dockerfile): the bench measures what runs. */
export const SIDECAR_NODE_FLAGS = ["--max-semi-space-size=16"];

/** A long-running child that printed the line saying where it listens. */
export interface Service {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Captures of the ready-line regexp (null for a probe). */
  readonly match: RegExpExecArray | null;
  /** Last lines of stdout+stderr, for error messages. */
  tail(): string;
  /** Resolves at the next output line that matches `line`; rejects after `timeoutMs`. */
  nextLine(line: RegExp, timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once exited. */
  stop(graceMs?: number): Promise<void>;
}

const children = new Set<ChildProcess>();
let pidFile: string | undefined;

/** Every child's pid is appended here too, so run.sh's trap can end them if the driver dies. */
export function recordPidsIn(path: string | undefined): void {
  pidFile = path;
}

/** Children that must get SIGTERM, not SIGKILL, to take their own children along (nginx's master). */
const termOnly = new WeakSet<ChildProcess>();

function track(proc: ChildProcess): void {
  children.add(proc);
  if (proc.pid !== undefined) recordPid(proc.pid);
  proc.once("exit", () => children.delete(proc));
}

/** Notes a pid this run started in the pid file (grandchildren such as nginx's worker too). */
export function recordPid(pid: number): void {
  if (pidFile !== undefined) appendFileSync(pidFile, `${pid}\n`);
}

/** Ends every child still running (the driver's exit path): SIGKILL, or SIGTERM for nginx's master. */
export function killAllChildren(): void {
  for (const proc of children) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(termOnly.has(proc) ? "SIGTERM" : "SIGKILL");
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once("exit", () => resolve()));
}

async function stopProcess(proc: ChildProcess, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited(proc);
  clearTimeout(timer);
}

/** How a service says it is ready: a line of its output, or a probe that starts answering. */
export type Readiness = RegExp | (() => Promise<boolean>);

/**
 * Spawns `command args`, resolves when it is ready (a line of its output matches, or the probe
 * answers true), rejects when it exits or `timeoutMs` passes first.
 */
export function startService(name: string, command: string, args: string[], ready: Readiness, timeoutMs = 15_000, killWithTerm = false): Promise<Service> {
  const proc = spawn(command, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  if (killWithTerm) termOnly.add(proc);
  track(proc);
  const lines: string[] = [];
  const tail = (): string => lines.slice(-20).join("\n");
  const waiters = new Set<(line: string) => void>();
  const nextLine = (re: RegExp, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(onLine);
        reject(new Error(`${name} printed no line matching ${re} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onLine = (line: string): void => {
        if (!re.test(line)) return;
        clearTimeout(timer);
        waiters.delete(onLine);
        resolve(line);
      };
      waiters.add(onLine);
    });
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => fail(`${name} was not ready within ${timeoutMs} ms`), timeoutMs);
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(new Error(`${why}\n--- ${name} output ---\n${tail()}`));
    };
    const succeed = (match: RegExpExecArray | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ name, proc, pid: proc.pid!, match, tail, nextLine, stop: (graceMs = 5000) => stopProcess(proc, graceMs) });
    };
    const onText = (chunk: Buffer): void => {
      for (const line of chunk.toString().split("\n")) {
        if (line === "") continue;
        lines.push(line);
        if (lines.length > 200) lines.shift();
        for (const waiter of waiters) waiter(line);
        if (ready instanceof RegExp && !settled) {
          const m = ready.exec(line);
          if (m !== null) succeed(m);
        }
      }
    };
    proc.stdout?.on("data", onText);
    proc.stderr?.on("data", onText);
    proc.once("error", (err) => fail(`${name} did not start: ${err.message}`));
    proc.once("exit", (code, signal) => fail(`${name} exited (${signal ?? `code ${code}`}) before it was ready`));
    if (typeof ready === "function") void pollUntilReady(ready, () => settled).then((ok) => ok && succeed(null));
  });
}

async function pollUntilReady(probe: () => Promise<boolean>, stop: () => boolean): Promise<boolean> {
  while (!stop()) {
    if (await probe().catch(() => false)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/** The Phoenix-protocol test app on an ephemeral loopback port. */
export async function startApp(): Promise<Service & { url: string }> {
  const svc = await startService(
    "app",
    NODE,
    ["dist/test/support/phoenix-server-main.js", "--listen", "127.0.0.1:0"],
    /phoenix-server listening on (http:\/\/127\.0\.0\.1:\d+)/,
  );
  return Object.assign(svc, { url: svc.match?.[1] ?? "" });
}

/** Node flags that let `collectGarbage()` run a full GC in the sidecar (see gc-on-signal.ts). */
export const GC_ON_SIGNAL_ARGS = ["--expose-gc", "--import", new URL("./gc-on-signal.js", import.meta.url).href];

/** Full GC in a process started with GC_ON_SIGNAL_ARGS; resolves once it is done, with the V8 heap used after it (bytes). */
export async function collectGarbage(svc: Service): Promise<number> {
  const done = svc.nextLine(/^bench-gc: done/, 10_000);
  svc.proc.kill("SIGUSR2");
  const line = await done;
  return Number(/heapUsed=(\d+)/.exec(line)?.[1] ?? NaN);
}

/** The sidecar (dist/sidecar/main.js) in front of `upstream`, both ports ephemeral. */
export async function startSidecar(upstream: string, nodeArgs: string[] = [], sidecarArgs: string[] = [], name = "sidecar"): Promise<Service & { url: string; adminUrl: string }> {
  const svc = await startService(
    name,
    SIDECAR_NODE,
    [...nodeArgs, ...SIDECAR_NODE_FLAGS, "dist/sidecar/main.js", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--upstream", upstream, "--drain-seconds", "1", ...sidecarArgs],
    /listening on 127\.0\.0\.1:(\d+) .*admin on 127\.0\.0\.1:(\d+)/,
  );
  return Object.assign(svc, { url: `http://127.0.0.1:${svc.match?.[1]}`, adminUrl: `http://127.0.0.1:${svc.match?.[2]}` });
}

/** A free loopback port (for nginx, which cannot report an ephemeral one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const addr = server.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resident set size of a process in KiB (VmRSS), 0 once it is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

/** User + system CPU time of a process so far, in seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Busy CPU time of the whole machine so far (all cores, idle and iowait left out), in seconds. */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const busy = ticks.slice(0, 8).reduce((s, t, i) => (i === 3 || i === 4 ? s : s + t), 0);
  return busy / CLOCK_TICKS_PER_SECOND;
}

export function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Direct children of a process (nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The soft limit on open files of this process (children inherit it). */
export function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return m === null || m[1] === "unlimited" ? 1_048_576 : Number(m[1]);
}

/** A forked load-generator process and a typed request/response over its IPC channel. */
export class LoadWorker {
  private readonly proc: ChildProcess;
  private pending: { expect: WorkerReport["type"]; resolve: (r: WorkerReport) => void; reject: (e: Error) => void } | undefined;

  constructor(readonly index: number) {
    this.proc = fork(fileURLToPath(new URL("./load-worker.js", import.meta.url)), [], {
      cwd: REPO_ROOT,
      execArgv: [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    track(this.proc);
    this.proc.on("message", (raw) => {
      const msg = raw as WorkerReport;
      const p = this.pending;
      if (p === undefined) return;
      this.pending = undefined;
      if (msg.type === "failed") p.reject(new Error(`load worker ${index}: ${msg.error}`));
      else if (msg.type !== p.expect) p.reject(new Error(`load worker ${index}: expected ${p.expect}, got ${msg.type}`));
      else p.resolve(msg);
    });
    this.proc.once("exit", (code, signal) => {
      this.pending?.reject(new Error(`load worker ${index} exited (${signal ?? `code ${code}`})`));
      this.pending = undefined;
    });
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  /** Sends `cmd` and waits for the report of type `expect`. */
  request<T extends WorkerReport["type"]>(cmd: WorkerCommand, expect: T, timeoutMs: number): Promise<Extract<WorkerReport, { type: T }>> {
    if (!this.proc.connected) return Promise.reject(new Error(`load worker ${this.index} is gone`));
    if (this.pending !== undefined) return Promise.reject(new Error(`load worker ${this.index} is busy`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new Error(`load worker ${this.index}: no ${expect} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = {
        expect,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as Extract<WorkerReport, { type: T }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.proc.send(cmd);
    });
  }

  /** Disconnects (the worker exits on its own) and SIGKILLs it if it lingers. */
  async stop(): Promise<void> {
    if (this.proc.connected) this.proc.disconnect();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await exited(this.proc);
    clearTimeout(timer);
  }
}
