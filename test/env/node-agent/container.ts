// One container of a pod as a local process: started in its own process group (so stopping it
// stops its children), logs in the pod directory, pid recorded for cluster-down, probes run
// against the pod IP. The pod worker decides restarts; this class runs one process at a time.
import type { V1Container, V1ContainerState, V1ContainerStatus, V1Pod, V1Probe } from "@kubernetes/client-node";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processStartTicks, stopProcess } from "../procs.js";
import { ContainerConfigError, expandCommand, resolveEnv, type EnvSources } from "./expand.js";
import { containerArgv, imageProblem, lookupImage } from "./images.js";
import { probeOnce, Prober } from "./probe.js";

export interface ContainerContext {
  readonly pod: () => V1Pod;
  readonly repoRoot: string;
  readonly podDir: string;
  /** Directory of pid records (cluster-down stops what is listed there). */
  readonly recordsDir: string;
  readonly envSources: EnvSources;
  /** Extra environment (service account, hostname) the container may override. */
  readonly baseEnv: () => Readonly<Record<string, string>>;
  readonly onChange: () => void;
  readonly onExit: (runner: ContainerRunner, exitCode: number) => void;
  /** A liveness or startup probe failed past its threshold: the pod worker restarts the container. */
  readonly onUnhealthy: (runner: ContainerRunner, why: string) => void;
  /** argv that runs `argv` in the pod's network namespace (as is when pods share the host's). */
  readonly inPod: (argv: readonly string[]) => string[];
  readonly log: (line: string) => void;
}

type State =
  | { kind: "waiting"; reason: string; message?: string }
  | { kind: "running"; startedAt: string; pid: number; startTicks: number }
  | { kind: "terminated"; exitCode: number; signal?: string; reason: string; message?: string; startedAt: string; finishedAt: string; pid: number };

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export class ContainerRunner {
  state: State = { kind: "waiting", reason: "ContainerCreating" };
  lastTerminated: State | undefined;
  restartCount = 0;
  private child: ChildProcess | undefined;
  private readiness: Prober | undefined;
  private liveness: Prober | undefined;
  private startup: Prober | undefined;
  private env = new Map<string, string>();
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly spec: V1Container, readonly isInit: boolean, private readonly ctx: ContainerContext) {}

  get name(): string {
    return this.spec.name;
  }

  get running(): boolean {
    return this.state.kind === "running";
  }

  /** Ready: running, started and the readiness probe (if any) passing. */
  get ready(): boolean {
    if (!this.running || !this.started) return false;
    return this.readiness ? this.readiness.verdict : true;
  }

  get started(): boolean {
    return this.running && (this.startup ? this.startup.verdict : true);
  }

  /** Path of the log of run number `restart` (0 = the first run). */
  logPath(restart = this.restartCount): string {
    return join(this.ctx.podDir, this.spec.name, `${restart}.log`);
  }

  /** Marks the container as waiting (before a start or during a back-off). */
  wait(reason: string, message?: string): void {
    this.state = { kind: "waiting", reason, message };
    this.ctx.onChange();
  }

  /**
   * Starts the process. Returns false (and sets a waiting reason) when it cannot start: unknown or
   * unbuilt image, or a configuration error (missing ConfigMap key...).
   */
  async start(): Promise<boolean> {
    const problem = imageProblem(this.spec.image ?? "", this.ctx.repoRoot);
    const entry = lookupImage(this.spec.image ?? "");
    if (problem || !entry) {
      this.wait(problem?.reason ?? "ErrImagePull", problem?.message);
      return false;
    }
    let argv: string[];
    try {
      const containerEnv = await resolveEnv(this.ctx.pod(), this.spec, this.ctx.envSources);
      this.env = new Map([...Object.entries(this.ctx.baseEnv()), ...containerEnv]);
      argv = expandCommand(containerArgv(entry, this.spec.command, this.spec.args), this.env);
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      this.wait(err.reason, err.message);
      return false;
    }
    mkdirSync(join(this.ctx.podDir, this.spec.name), { recursive: true });
    const fd = openSync(this.logPath(), "a");
    let child: ChildProcess;
    try {
      const inPod = this.ctx.inPod(argv);
      child = spawn(inPod[0] ?? "", inPod.slice(1), {
        cwd: this.spec.workingDir || this.ctx.repoRoot, env: Object.fromEntries(this.env), detached: true, stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    const startTicks = pid == null ? undefined : processStartTicks(pid);
    if (pid == null || startTicks == null) {
      const message = await new Promise<string>((r) => { child.once("error", (e) => r(e.message)); setTimeout(() => r("process exited at once"), 100); });
      this.wait("RunContainerError", `starting ${argv.join(" ")}: ${message}`);
      return false;
    }
    this.child = child;
    const record = join(this.ctx.recordsDir, `${pid}.json`);
    const pod = this.ctx.pod().metadata;
    writeFileSync(record, JSON.stringify({ name: `${pod?.namespace}/${pod?.name}/${this.spec.name}`, pid, startTicks, command: argv, log: this.logPath() }));
    this.state = { kind: "running", startedAt: now(), pid, startTicks };
    this.ctx.log(`started ${pod?.namespace}/${pod?.name}/${this.spec.name} pid ${pid}: ${argv.join(" ")}`);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        rmSync(record, { force: true });
        this.onProcessExit(code, signal);
        resolve();
      });
    });
    this.startProbes();
    this.ctx.onChange();
    return true;
  }

  private onProcessExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.stopProbes();
    const running = this.state.kind === "running" ? this.state : undefined;
    const exitCode = code ?? (signal ? 128 + signalNumber(signal) : 1);
    this.state = {
      kind: "terminated", exitCode, signal: signal ?? undefined, reason: exitCode === 0 ? "Completed" : "Error",
      startedAt: running?.startedAt ?? now(), finishedAt: now(), pid: running?.pid ?? 0,
    };
    this.child = undefined;
    this.ctx.onExit(this, exitCode);
    this.ctx.onChange();
  }

  private startProbes(): void {
    const attempt = (p: V1Probe) => () => probeOnce(p, this.ctx.envSources.podIP(), this.spec, this.env, this.ctx.inPod);
    const unhealthy = (kind: string, p: Prober) => this.ctx.onUnhealthy(this, `${kind} probe failed: ${p.lastMessage}`);
    const startOthers = () => {
      if (this.spec.readinessProbe) {
        this.readiness = new Prober(this.spec.readinessProbe, attempt(this.spec.readinessProbe), false, (_p, changed) => {
          if (changed) this.ctx.onChange();
        });
        this.readiness.start();
      }
      if (this.spec.livenessProbe) {
        this.liveness = new Prober(this.spec.livenessProbe, attempt(this.spec.livenessProbe), true, (p, changed) => {
          if (changed && !p.verdict) unhealthy("liveness", p);
        });
        this.liveness.start();
      }
    };
    if (!this.spec.startupProbe) return startOthers();
    this.startup = new Prober(this.spec.startupProbe, attempt(this.spec.startupProbe), false, (p, changed) => {
      if (p.verdict) {
        p.stop();
        startOthers();
      } else if (p.failedOut) unhealthy("startup", p);
      if (changed) this.ctx.onChange();
    });
    this.startup.start();
  }

  private stopProbes(): void {
    for (const p of [this.readiness, this.liveness, this.startup]) p?.stop();
    this.readiness = this.liveness = this.startup = undefined;
  }

  /** Stops the process: SIGTERM to its group, SIGKILL after `graceMs`. Resolves once it exited. */
  async stop(graceMs: number): Promise<void> {
    if (this.state.kind !== "running") return;
    this.stopProbes();
    const { pid, startTicks } = this.state;
    await stopProcess({ pid, startTicks }, graceMs);
    await this.exited;
  }

  /** Moves the terminated state to lastState before a restart. */
  prepareRestart(): void {
    if (this.state.kind === "terminated") this.lastTerminated = this.state;
    this.restartCount++;
  }

  status(): V1ContainerStatus {
    const s = this.state;
    const id = s.kind === "waiting" ? undefined : `process://${s.pid}`;
    return {
      name: this.spec.name,
      image: this.spec.image ?? "",
      imageID: `connmeter-process://${this.spec.image ?? ""}`,
      ...(id ? { containerID: id } : {}),
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      state: apiState(s),
      lastState: this.lastTerminated ? apiState(this.lastTerminated) : {},
    } as V1ContainerStatus;
  }
}

function apiState(s: State): V1ContainerState {
  // Times stay ISO strings: this object is sent as JSON as is (merge patch).
  const state = s.kind === "waiting"
    ? { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } }
    : s.kind === "running"
      ? { running: { startedAt: s.startedAt } }
      : { terminated: { exitCode: s.exitCode, reason: s.reason, startedAt: s.startedAt, finishedAt: s.finishedAt, containerID: `process://${s.pid}`, ...(s.signal ? { message: `killed by ${s.signal}` } : {}) } };
  return state as unknown as V1ContainerState;
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };
  return table[signal] ?? 1;
}
