/** Endpoints remembered at most; the oldest failures are forgotten first. */
export const MAX_DEAD_ENDPOINTS = 20_000;

/**
 * Sidecar endpoints (ip:port) whose last call got no answer at all (timeout, refused,
 * unreachable): the next call to one must connect fast or fail fast, so pods on a dead node
 * cost their policy a short connect timeout each instead of a slot for the whole timeout.
 * Any answer, even an HTTP error, clears the mark.
 */
export class DeadEndpoints {
  private readonly suspects = new Set<string>();

  constructor(private readonly max = MAX_DEAD_ENDPOINTS) {}

  isSuspect(endpoint: string): boolean {
    return this.suspects.has(endpoint);
  }

  failed(endpoint: string): void {
    this.suspects.delete(endpoint);
    this.suspects.add(endpoint);
    if (this.suspects.size > this.max) this.suspects.delete(this.suspects.values().next().value as string);
  }

  answered(endpoint: string): void {
    this.suspects.delete(endpoint);
  }

  get size(): number {
    return this.suspects.size;
  }
}
