// Progress output of the soak: one line per phase, fault and finding, each stamped with the
// seconds since the soak started, so a reader can line faults up with what they caused.

export class SoakLog {
  readonly startedAt = Date.now();

  /** Seconds since the start, one decimal. */
  elapsedS(at = Date.now()): number {
    return Math.round((at - this.startedAt) / 100) / 10;
  }

  line(msg: string): void {
    console.log(`[${this.elapsedS().toFixed(1).padStart(6)} s] ${msg}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sleeps `ms`, or less when `signal` aborts first. */
export function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** An error's message without a stack. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
