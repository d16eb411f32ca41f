import { constants, deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { FrameReader, type DeflateParams, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
import { InflateBudget } from "../../../../sidecar/ws/inflate-budget.js";
import { wsFrame } from "./ws-internals.js";

const DEFLATE: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
const RING_BYTES = 32 * 1024;
const BUDGET_BYTES = 256 * 1024;

/** A compressed masked client message of `bytes` zeros (a small decompression bomb). */
function bomb(bytes: number): Buffer {
  const z = deflateRawSync(Buffer.alloc(bytes), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  return wsFrame(z.subarray(0, z.length - 4), { fin: true, opcode: 1, mask: true, rsv1: true });
}

/** A reader whose sink counts inflated bytes, driven the way TappedConnection drives it. */
function bombReader(budget: InflateBudget | undefined, perReaderSlice: number, inflated: { total: number }) {
  const state = { delivered: 0, ended: false };
  const sink: MessageSink = {
    onMessageStart() {},
    onMessageData(_data, start, end) {
      state.delivered += end - start;
      inflated.total += end - start;
      return true;
    },
    onMessageEnd: () => void (state.ended = true),
    onClose() {},
    onError(e) {
      throw e;
    },
  };
  const reader = new FrameReader(sink, { fromClient: true, deflate: DEFLATE, maxMessageBytes: Infinity, inflateSliceBytes: perReaderSlice, ...(budget ? { inflateBudget: budget } : {}) });
  const later = (fn: () => void) => (budget ? budget.defer(fn) : setImmediate(fn));
  const resume = (): void => {
    if (!reader.resume()) later(resume);
  };
  return { state, start: (frame: Buffer) => (reader.push(frame) ? undefined : later(resume)) };
}

const nextTurn = () => new Promise((r) => setImmediate(r));

describe("InflateBudget", () => {
  it("runs waiting continuations first come, first served while the turn's budget lasts, the rest at the next turn", async () => {
    const budget = new InflateBudget(100);
    const ran: string[] = [];
    budget.defer(() => (ran.push("a"), budget.spend(60)));
    budget.defer(() => (ran.push("b"), budget.spend(60)));
    budget.defer(() => ran.push("c"));
    expect(ran).toEqual([]);
    await nextTurn();
    expect(ran).toEqual(["a", "b"]); // 120 spent: c waits for the next refill
    await nextTurn();
    expect(ran).toEqual(["a", "b", "c"]);
    expect(budget.waitingCount).toBe(0);
  });

  it("refuses a budget that is not positive", () => {
    expect(() => new InflateBudget(0)).toThrow(RangeError);
  });

  it("ten simultaneous bombs inflate one budget per turn together, not ten slices, and every one progresses in turn", async () => {
    const inflated = { total: 0 };
    const budget = new InflateBudget(BUDGET_BYTES);
    const readers = Array.from({ length: 10 }, () => bombReader(budget, BUDGET_BYTES, inflated));
    const frame = bomb(4 * 1024 * 1024);
    for (const r of readers) r.start(frame);
    // the first turn: one budget, plus at most one ring per reader that found it spent
    expect(inflated.total).toBeLessThanOrEqual(BUDGET_BYTES + 10 * RING_BYTES);
    let turns = 0;
    let before = inflated.total;
    let worstTurn = 0;
    while (readers.some((r) => !r.state.ended) && turns < 10_000) {
      await nextTurn();
      worstTurn = Math.max(worstTurn, inflated.total - before);
      before = inflated.total;
      turns++;
      // round robin: the readers take the budget in turn, so none gets two turns' worth ahead of the slowest
      const d = readers.map((r) => r.state.delivered);
      if (readers.every((r) => !r.state.ended)) expect(Math.max(...d) - Math.min(...d)).toBeLessThanOrEqual(2 * (BUDGET_BYTES + RING_BYTES));
    }
    expect(readers.every((r) => r.state.ended && r.state.delivered === 4 * 1024 * 1024)).toBe(true);
    expect(worstTurn).toBeLessThanOrEqual(BUDGET_BYTES + 10 * RING_BYTES);
  });

  it("without a shared budget the same bombs cost a slice each per turn (what the budget prevents)", () => {
    const inflated = { total: 0 };
    const readers = Array.from({ length: 10 }, () => bombReader(undefined, BUDGET_BYTES, inflated));
    const frame = bomb(4 * 1024 * 1024);
    for (const r of readers) r.start(frame);
    expect(inflated.total).toBeGreaterThanOrEqual(10 * BUDGET_BYTES);
  });
});
