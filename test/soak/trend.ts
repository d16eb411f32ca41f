// Flat or not: verdicts on an operator replica's memory and CPU over its life. Pure functions
// over the 5-second samples, so they are unit-tested without a clock.

const MIB = 1024 * 1024;

/** Samples (5 s apart) skipped at a replica's start: informers list, caches fill. */
export const WARMUP_SAMPLES = 6;
/**
 * Fewer samples than this after the warm-up: too short a life to judge a trend. Small on
 * purpose: a replica stuck in a loop is killed by its liveness probe within a minute, and the
 * memory it piles up meanwhile is the finding.
 */
export const MIN_TREND_SAMPLES = 3;
/** Memory is flat when the last third's peak is at most this times the first third's, plus MEMORY_SLACK_BYTES. */
export const MEMORY_GROWTH_RATIO = 1.25;
export const MEMORY_SLACK_BYTES = 16 * MIB;
/** A replica is busy-looping when this many samples in a row (15 s) are runnable at least BUSY_PERCENT of the time. */
export const BUSY_RUN = 3;
export const BUSY_PERCENT = 90;
/** CPU is flat when the last third's mean is at most this times the first third's, plus CPU_SLACK_PERCENT. */
export const CPU_GROWTH_RATIO = 2;
export const CPU_SLACK_PERCENT = 10;

export type Trend = "flat" | "growing" | "busy" | "short";

function thirds(values: readonly number[]): [number[], number[]] {
  const n = Math.floor(values.length / 3);
  return [values.slice(0, n), values.slice(values.length - n)];
}

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/** Memory (bytes, heap or resident, in sample order) over a replica's life. */
export function memoryTrend(bytes: readonly number[]): Trend {
  const judged = bytes.slice(WARMUP_SAMPLES);
  if (judged.length < MIN_TREND_SAMPLES) return "short";
  const [first, last] = thirds(judged);
  return Math.max(...last) <= Math.max(...first) * MEMORY_GROWTH_RATIO + MEMORY_SLACK_BYTES ? "flat" : "growing";
}

/**
 * CPU over a replica's life: `cpu` in % of a core, `runnable` in % of wall time (on a CPU or
 * waiting for one). A busy run counts even in a short life; it is judged on `runnable`, which
 * a shared machine does not dilute.
 */
export function cpuTrend(cpu: readonly number[], runnable: readonly number[]): Trend {
  let run = 0;
  for (const r of runnable) {
    run = r >= BUSY_PERCENT ? run + 1 : 0;
    if (run >= BUSY_RUN) return "busy";
  }
  const judged = cpu.slice(WARMUP_SAMPLES);
  if (judged.length < MIN_TREND_SAMPLES) return "short";
  const [first, last] = thirds(judged);
  return mean(last) <= mean(first) * CPU_GROWTH_RATIO + CPU_SLACK_PERCENT ? "flat" : "growing";
}

/** Whether a trend passes: "short" passes (nothing to judge), "growing" and "busy" do not. */
export const trendOk = (t: Trend): boolean => t === "flat" || t === "short";
