import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// This file runs from test/support (vitest) or from dist/test/support (the demo).
const UP = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const REPO = path.basename(UP) === "dist" ? path.dirname(UP) : UP;
/** The built sidecar. */
export const SIDECAR_MAIN = path.join(REPO, "dist/sidecar/main.js");

export interface SidecarProcess {
  child: ChildProcess;
  /** Public and admin ports, read from the sidecar's listening line. */
  port: number;
  adminPort: number;
  output(): string;
}

/**
 * Starts the built sidecar binary on ephemeral loopback ports (never a guessed port that
 * something else may hold) and waits for its listening line.
 */
export async function startSidecarProcess(args: string[], stdio: "pipe" | "inherit" = "pipe", env: NodeJS.ProcessEnv = {}): Promise<SidecarProcess> {
  if (!existsSync(SIDECAR_MAIN)) throw new Error(`${SIDECAR_MAIN} is missing: run \`make build\` (make test and make demo do it for you)`);
  const child = spawn(process.execPath, [SIDECAR_MAIN, "--listen=127.0.0.1:0", "--admin=127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let out = "";
  const collect = (d: Buffer): void => {
    out += d.toString();
    if (stdio === "inherit") process.stdout.write(d);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const until = Date.now() + 10_000;
  let m: RegExpExecArray | null;
  while ((m = /listening on [\d.]+:(\d+) .* admin on [\d.]+:(\d+)/.exec(out)) === null) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`sidecar did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, port: Number(m[1]), adminPort: Number(m[2]), output: () => out };
}
