// Background processes that outlive the command that started them, and how to stop exactly
// them later. A pid alone is not an identity (pids are reused), so every record also keeps the
// process start time from /proc/<pid>/stat; a pid whose start time differs is someone else's.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

/** A process we started, as saved in state files. */
export interface ProcessRecord {
  readonly name: string;
  readonly pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  readonly startTicks: number;
  readonly command: readonly string[];
  readonly log: string;
}

/** The start time of `pid` in clock ticks, or undefined if it does not exist or is a zombie. */
export function processStartTicks(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: parse after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** Whether the process of `rec` still runs (same pid and same start time). */
export function isAlive(rec: Pick<ProcessRecord, "pid" | "startTicks">): boolean {
  return processStartTicks(rec.pid) === rec.startTicks;
}

export interface SpawnOptions {
  readonly log: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/**
 * Starts `command` in its own process group (so it survives our exit and can be stopped with
 * its children), stdout and stderr appended to `log`.
 */
export function spawnDaemon(name: string, command: readonly string[], opts: SpawnOptions): ProcessRecord {
  const [file, ...args] = command;
  if (file == null) throw new Error(`${name}: empty command`);
  const fd = openSync(opts.log, "a");
  try {
    const child = spawn(file, args, { detached: true, stdio: ["ignore", fd, fd], env: opts.env ?? process.env, cwd: opts.cwd });
    child.on("error", () => { /* reported below through the missing pid or by the readiness wait */ });
    child.unref();
    if (child.pid == null) throw new Error(`${name}: could not start ${file} (see ${opts.log})`);
    const startTicks = processStartTicks(child.pid);
    if (startTicks == null) throw new Error(`${name}: exited at once (see ${opts.log})`);
    return { name, pid: child.pid, startTicks, command, log: opts.log };
  } finally {
    closeSync(fd);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until the process of `rec` is gone; true if it went within `timeoutMs`. */
export async function waitForExit(rec: Pick<ProcessRecord, "pid" | "startTicks">, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(rec)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function signalGroup(rec: Pick<ProcessRecord, "pid" | "startTicks">, signal: NodeJS.Signals): void {
  if (!isAlive(rec)) return;
  try {
    process.kill(-rec.pid, signal);
  } catch {
    try { process.kill(rec.pid, signal); } catch { /* gone meanwhile */ }
  }
}

/**
 * Stops the process group of `rec`: SIGTERM, then SIGKILL after `graceMs`. Does nothing if the
 * pid now belongs to another process. Returns how it ended.
 */
export async function stopProcess(
  rec: Pick<ProcessRecord, "pid" | "startTicks">,
  graceMs: number,
): Promise<"gone" | "terminated" | "killed"> {
  if (!isAlive(rec)) return "gone";
  signalGroup(rec, "SIGTERM");
  if (await waitForExit(rec, graceMs)) return "terminated";
  signalGroup(rec, "SIGKILL");
  await waitForExit(rec, 5_000);
  return "killed";
}

/**
 * Stops every process recorded in `dir` (one `<pid>.json` ProcessRecord per file) that still
 * runs, and removes the records. Returns how many were running.
 */
export async function stopRecordedProcesses(dir: string, graceMs: number): Promise<number> {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith(".json")) continue;
    const file = join(dir, f);
    try {
      const rec = JSON.parse(readFileSync(file, "utf8")) as ProcessRecord;
      if ((await stopProcess(rec, graceMs)) !== "gone") n++;
    } catch { /* a half-written record: its process never started */ }
    rmSync(file, { force: true });
  }
  return n;
}
