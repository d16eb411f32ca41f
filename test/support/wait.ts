/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `read` every `intervalMs` until `check` holds and returns the value; the error names
 * what was awaited and the last value seen.
 */
export async function waitFor<T>(read: () => Promise<T> | T, check: (v: T) => boolean, what: string, timeoutMs = 15_000, intervalMs = 25): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T = await read();
  while (!check(last)) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value ${JSON.stringify(last)}`);
    await sleep(intervalMs);
    last = await read();
  }
  return last;
}

/** Polls a synchronous condition every 5 ms. */
export async function waitUntil(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  await waitFor(check, Boolean, what, timeoutMs, 5);
}
