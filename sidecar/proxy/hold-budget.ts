/**
 * What one holder (a socket's {@link JoinGate}) keeps back, and how the budget stops it
 * growing: the budget pauses the holder's source and resumes it later.
 */
export interface BudgetedHolder {
  /** Bytes held plus {@link HELD_PART_COST_BYTES} per held part. */
  readonly heldCost: number;
  /** Stop reading the source that fills this holder (the process is over its budget). */
  pauseForBudget(): void;
  /** Read it again. */
  resumeFromBudget(): void;
}

/**
 * What a held part costs beyond its bytes: a Buffer view and its array slot, ~100 bytes of heap.
 * One message dribbled in 1-byte reads costs ~100× its size, so parts are counted, not only bytes.
 */
export const HELD_PART_COST_BYTES = 96;

/** Default process-wide budget of held bytes (all sockets' join gates together). */
export const DEFAULT_HOLD_BUDGET_BYTES = 32 * 1024 * 1024;

/**
 * The process-wide budget of what join gates hold back, like a shared zlib limiter for memory:
 * each gate's hold is bounded on its own (bytes and parts of one message), but ten thousand
 * sockets each dribbling a message under that bound would still add up. Past the budget, the
 * heaviest holder that is still reading is paused at each further growth, so the total stops
 * growing; paused holders are read again once the total is back under half the budget, and a
 * paused holder that no longer holds anything is read again at once.
 */
export class HoldBudget {
  private total = 0;
  private readonly holding = new Map<BudgetedHolder, number>();
  private readonly paused = new Set<BudgetedHolder>();
  /** Times a holder was paused for the budget (a metric). */
  pauses = 0;

  constructor(readonly maxBytes: number = DEFAULT_HOLD_BUDGET_BYTES) {}

  /** Held cost of every holder together. */
  get totalCost(): number {
    return this.total;
  }

  /** Holders paused for the budget now. */
  get pausedHolders(): number {
    return this.paused.size;
  }

  /** A holder's cost changed (call after every hold and forward). */
  update(holder: BudgetedHolder): void {
    const before = this.holding.get(holder) ?? 0;
    const cost = holder.heldCost;
    this.total += cost - before;
    if (cost > 0) this.holding.set(holder, cost);
    else this.holding.delete(holder);
    if (cost === 0 && this.paused.delete(holder)) holder.resumeFromBudget();
    if (cost > before && this.total > this.maxBytes) this.pauseHeaviest();
    else if (this.paused.size > 0 && this.total <= this.maxBytes / 2) this.resumeAll();
  }

  /** The holder is gone (its socket closed): what it held no longer counts. */
  remove(holder: BudgetedHolder): void {
    this.total -= this.holding.get(holder) ?? 0;
    this.holding.delete(holder);
    this.paused.delete(holder);
    if (this.paused.size > 0 && this.total <= this.maxBytes / 2) this.resumeAll();
  }

  private pauseHeaviest(): void {
    let heaviest: BudgetedHolder | null = null;
    let most = 0;
    for (const [holder, cost] of this.holding) {
      if (cost > most && !this.paused.has(holder)) {
        heaviest = holder;
        most = cost;
      }
    }
    if (heaviest === null) return;
    this.paused.add(heaviest);
    this.pauses++;
    heaviest.pauseForBudget();
  }

  private resumeAll(): void {
    const resumed = [...this.paused];
    this.paused.clear();
    for (const holder of resumed) holder.resumeFromBudget();
  }
}
