import type { FrameReader } from "../ws/frame-reader.js";
import { HELD_PART_COST_BYTES, type BudgetedHolder, type HoldBudget } from "./hold-budget.js";

/**
 * Bytes of one client message held back at most while deciding whether it is a join to
 * refuse. A join is a few hundred bytes; a message past this size is let through whole.
 */
export const MAX_HOLD_BYTES = 64 * 1024;
/**
 * Reads of one message held back at most (like ws's maxFragments): a join arrives in one or a
 * few reads; one dribbled a byte per read would cost ~100 bytes of heap per byte held. Past it
 * the message is let through whole, as one past {@link MAX_HOLD_BYTES} is.
 */
export const MAX_HOLD_PARTS = 256;

/**
 * The client→server relay when joins may be refused: bytes of a data message are held from
 * its first header byte until the message is known, so a refused join can be cut out of the
 * stream whole and the app never sees it. Everything else is forwarded unchanged, in order,
 * as soon as it is decided. Memory is bounded by {@link MAX_HOLD_BYTES} (and
 * {@link MAX_HOLD_PARTS} reads) plus one chunk per socket, and by a process-wide
 * {@link HoldBudget} for all sockets together.
 *
 * Offsets are stream offsets from the {@link FrameReader} parsing the same bytes.
 */
export class JoinGate implements BudgetedHolder {
  private readonly held: Buffer[] = [];
  /** Stream offset of the first held byte. */
  private heldStart = 0;
  private received = 0;
  /** [start, end) stream ranges to cut, as flat pairs in stream order. */
  private readonly drops: number[] = [];
  /** Start offset of a message that grew past the hold limit: it can no longer be cut. */
  private released = -1;
  /** The held cost the process-wide budget last saw. */
  private reported = 0;

  /** The process-wide budget paused this gate's source. */
  pausedForBudget = false;

  constructor(
    private readonly reader: FrameReader,
    private readonly write: (chunk: Buffer) => boolean,
    private readonly budget: HoldBudget | null = null,
    private readonly source: { pause(): void; resume(): void } | null = null,
  ) {}

  get heldCost(): number {
    return this.received - this.heldStart + this.held.length * HELD_PART_COST_BYTES;
  }

  pauseForBudget(): void {
    this.pausedForBudget = true;
    this.source?.pause();
  }

  resumeFromBudget(): void {
    this.pausedForBudget = false;
    this.source?.resume();
  }

  /** The socket closed: what the gate held no longer counts against the process-wide budget. */
  dispose(): void {
    this.budget?.remove(this);
  }

  /** Nothing is held back. */
  get empty(): boolean {
    return this.held.length === 0;
  }

  /**
   * A chunk forwarded without being held (nothing could be cut then; call only while
   * {@link empty}): the gate's offsets stay the stream's, so a cut decided later, once
   * budgets or the virtual topic appear mid-connection, removes the right bytes.
   */
  passed(bytes: number): void {
    this.heldStart += bytes;
    this.received += bytes;
  }

  /**
   * Takes a client chunk; call {@link flush} after the reader has parsed it, or {@link report}
   * when the parse yields first. The budget sees the chunk then, not now: parsing is
   * synchronous, so nothing can run in between, and a chunk that is decided whole at once
   * (nearly every chunk) never costs the budget a look-up.
   */
  hold(chunk: Buffer): void {
    this.held.push(chunk);
    this.received += chunk.length;
  }

  /** Tells the process-wide budget what this gate holds now, if that changed since it last heard. */
  report(): void {
    if (this.budget === null) return;
    const cost = this.heldCost;
    if (cost === this.reported) return;
    this.reported = cost;
    this.budget.update(this);
  }

  /**
   * Whether the message that just ended can be cut out of the stream: not when it is longer
   * than the hold limit, whether or not its first bytes already went through.
   */
  canDropEndedMessage(): boolean {
    const start = this.reader.messageStartOffset;
    return this.released !== start && this.reader.offset - start <= MAX_HOLD_BYTES;
  }

  /** Cuts the message that just ended (call from its end-of-message callback). */
  dropEndedMessage(): void {
    this.drops.push(this.reader.messageStartOffset, this.reader.offset);
  }

  /**
   * Forwards every byte that is decided: all of them, except a data message still in
   * progress or a frame whose header is incomplete (it may start one), whose bytes wait.
   * Returns false when the destination asked for backpressure.
   */
  flush(): boolean {
    const r = this.reader;
    if (r.atMessageBoundary) return this.forwardUpTo(this.received);
    if (!r.inDataMessage) return this.forwardUpTo(Math.max(this.heldStart, r.frameStartOffset));
    const start = r.messageStartOffset;
    if (this.received - start > MAX_HOLD_BYTES || this.held.length > MAX_HOLD_PARTS) this.released = start;
    return this.forwardUpTo(this.released === start ? this.received : Math.max(this.heldStart, start));
  }

  /** Forwards everything held, whatever it is (the reader gave up, or the socket is closing). */
  release(): boolean {
    this.drops.length = 0;
    return this.forwardUpTo(this.received);
  }

  private forwardUpTo(safe: number): boolean {
    let ok = true;
    while (this.held.length > 0 && this.heldStart < safe) {
      const chunk = this.held[0]!;
      const end = Math.min(this.heldStart + chunk.length, safe);
      ok = this.emit(chunk, this.heldStart, end) && ok;
      if (end === this.heldStart + chunk.length) this.held.shift();
      else this.held[0] = chunk.subarray(end - this.heldStart);
      this.heldStart = end;
    }
    while (this.drops.length > 0 && this.drops[1]! <= this.heldStart) this.drops.splice(0, 2);
    this.report();
    return ok;
  }

  /** Writes chunk bytes for stream range [from, to), skipping the drop ranges. */
  private emit(chunk: Buffer, from: number, to: number): boolean {
    if (this.drops.length === 0 && to - from === chunk.length) return this.write(chunk);
    let ok = true;
    let cur = from;
    for (let i = 0; i < this.drops.length && cur < to; i += 2) {
      const dropStart = this.drops[i]!;
      const dropEnd = this.drops[i + 1]!;
      if (dropEnd <= cur) continue;
      if (dropStart >= to) break;
      if (dropStart > cur) ok = this.write(chunk.subarray(cur - from, dropStart - from)) && ok;
      cur = Math.min(to, dropEnd);
    }
    if (cur < to) ok = this.write(chunk.subarray(cur - from, to - from)) && ok;
    return ok;
  }
}
