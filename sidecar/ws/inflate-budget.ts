/**
 * The process-wide inflate budget: bytes all frame readers together may inflate per turn of
 * the event loop. Each reader already yields after its own slice, but N sockets sending
 * decompression bombs at once would still cost N slices per turn; with one budget they cost
 * the same as one (ws runs every inflate through one process-wide zlib limiter for the same
 * reason). A reader that found the budget spent yields; its continuation waits here, and once
 * per turn the budget is refilled and waiting continuations run first come, first served until
 * it is spent again, so every bomb progresses in turn and no other socket waits more than one
 * budget's worth of inflating (a ring, ≤ 32 KiB, may run over per call).
 */
export class InflateBudget {
  private left: number;
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;

  constructor(readonly bytesPerTurn: number) {
    if (!(bytesPerTurn > 0)) throw new RangeError(`inflate budget must be positive, got ${bytesPerTurn}`);
    this.left = bytesPerTurn;
  }

  /** Bytes that may still be inflated this turn (≤ 0: spent). */
  get available(): number {
    return this.left;
  }

  /** Readers' continuations waiting for the next refill. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /** Counts inflated bytes against this turn's budget. */
  spend(bytes: number): void {
    this.left -= bytes;
    if (this.left <= 0) this.schedule();
  }

  /** Runs `resume` at a later turn, after those already waiting, once the budget is refilled. */
  defer(resume: () => void): void {
    this.waiting.push(resume);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    this.left = this.bytesPerTurn;
    // Only those waiting now: a continuation that yields again queues behind them for the next turn.
    for (let n = this.waiting.length; n > 0 && this.left > 0; n--) this.waiting.shift()!();
    if (this.waiting.length > 0) this.schedule();
  };
}
