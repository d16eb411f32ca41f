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

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inBatches<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
