// The soak's knobs, read once from the environment. Every loop of the soak is bounded by
// these numbers and stops by itself.
import { join } from "node:path";

export interface SoakConfig {
  /** Length of the fault phase, seconds (setup, settle and report come on top, ~2 min). */
  faultSeconds: number;
  /** Seed of every random choice (fault times and kinds, targets, topics, names). */
  seed: number;
  /** Policy create/delete cycles spread over the fault phase. */
  churnCycles: number;
  /** Every n-th churn cycle holds its policy with another tool's finalizer while it is deleted. */
  finalizerEvery: number;
  /** Scrape interval of the soak's policies, seconds (budget TTL: operator/controller/budget-plan.ts). */
  intervalSeconds: number;
  /** Quiet time after the faults stop, before status is compared with the sidecars, seconds. */
  settleSeconds: number;
  /** Where the JSON report goes. */
  reportPath: string;
  /** "shared": one admin token everywhere; "per-namespace": a token per namespace (Secret `connmeter-admin-token`). */
  tokens: "shared" | "per-namespace";
  /** Leave the namespaces and the cluster running at the end (debugging). */
  keep: boolean;
}

/** Defaults give a run of about 10 minutes on 2 cores. */
export function loadSoakConfig(env: NodeJS.ProcessEnv, repoRoot: string): SoakConfig {
  return {
    faultSeconds: int(env, "CONNMETER_SOAK_SECONDS", 450, 20, 3600),
    seed: int(env, "CONNMETER_SOAK_SEED", 14, 0, 2 ** 31 - 1),
    churnCycles: int(env, "CONNMETER_SOAK_CHURN_CYCLES", 100, 0, 1000),
    finalizerEvery: 4,
    intervalSeconds: 2,
    settleSeconds: int(env, "CONNMETER_SOAK_SETTLE_SECONDS", 20, 5, 300),
    reportPath: join(repoRoot, ".local", "soak-report.json"),
    tokens: tokenMode(env.CONNMETER_SOAK_TOKENS),
    keep: env.CONNMETER_SOAK_KEEP === "1",
  };
}

function tokenMode(raw: string | undefined): "shared" | "per-namespace" {
  if (raw === undefined || raw === "" || raw === "shared") return "shared";
  if (raw === "per-namespace") return raw;
  throw new Error(`CONNMETER_SOAK_TOKENS must be "shared" or "per-namespace", got "${raw}"`);
}

function int(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  return n;
}
