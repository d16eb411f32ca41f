import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HELD_PART_COST_BYTES, HoldBudget } from "../../../../sidecar/proxy/hold-budget.js";
import { JoinGate, MAX_HOLD_BYTES, MAX_HOLD_PARTS } from "../../../../sidecar/proxy/join-gate.js";
import { FrameReader, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
import { wsFrame } from "../ws/ws-internals.js";

const OP_TEXT = 1;
const OP_CONTINUATION = 0;
const OP_PING = 9;

/** A client message split into fragments, with a ping after some fragments. */
interface Spec {
  text: string;
  fragments: number;
  pingInside: boolean;
}

/** Builds the masked client stream and the bytes the app must receive: dropped messages cut whole. */
function build(specs: Spec[]): { stream: Buffer; expected: Buffer } {
  const all: Buffer[] = [];
  const kept: Buffer[] = [];
  for (const spec of specs) {
    const data = Buffer.from(spec.text);
    const n = Math.max(1, Math.min(spec.fragments, data.length));
    const frames: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const piece = data.subarray(Math.floor((i * data.length) / n), Math.floor(((i + 1) * data.length) / n));
      frames.push(wsFrame(piece, { fin: i === n - 1, opcode: i === 0 ? OP_TEXT : OP_CONTINUATION, mask: true, rsv1: false }));
      if (spec.pingInside && i < n - 1) frames.push(wsFrame(Buffer.from("p"), { fin: true, opcode: OP_PING, mask: true, rsv1: false }));
    }
    all.push(...frames);
    if (!spec.text.startsWith("DROP")) kept.push(...frames);
  }
  return { stream: Buffer.concat(all), expected: Buffer.concat(kept) };
}

/** Runs the stream through a reader and a gate that drops messages starting with DROP. */
function gate(stream: Buffer, cuts: number[], observe?: (g: JoinGate) => void, budget?: HoldBudget): Buffer {
  const out: Buffer[] = [];
  let text = "";
  let g: JoinGate | null = null;
  const sink: MessageSink = {
    onMessageStart: () => void (text = ""),
    onMessageData: (d, start, end) => ((text += d.toString("latin1", start, end)), true),
    onMessageEnd: () => {
      if (text.startsWith("DROP") && g!.canDropEndedMessage()) g!.dropEndedMessage();
    },
    onClose: () => {},
    onError: (e) => {
      throw e;
    },
  };
  const reader = new FrameReader(sink, { fromClient: true, deflate: null, maxMessageBytes: Infinity });
  g = new JoinGate(
    reader,
    (chunk) => {
      out.push(Buffer.from(chunk));
      return true;
    },
    budget ?? null,
  );
  let at = 0;
  for (const cut of [...cuts, stream.length]) {
    const end = Math.min(stream.length, Math.max(at, cut));
    if (end === at) continue;
    const chunk = stream.subarray(at, end);
    g.hold(chunk);
    reader.push(chunk);
    observe?.(g);
    g.flush();
    at = end;
  }
  return Buffer.concat(out);
}

const specArb = fc.record({
  text: fc.oneof(fc.string({ minLength: 1, maxLength: 300 }), fc.string({ maxLength: 300 }).map((s) => `DROP${s}`)),
  fragments: fc.integer({ min: 1, max: 4 }),
  pingInside: fc.boolean(),
});

describe("JoinGate", () => {
  it("cuts exactly the refused messages out of the stream, whatever the chunking and fragmentation (property)", () => {
    fc.assert(
      fc.property(fc.array(specArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat({ max: 5000 })), (specs, cuts) => {
        const { stream, expected } = build(specs);
        expect(gate(stream, cuts.sort((a, b) => a - b)).equals(expected)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it("cuts a refused join split at every byte", () => {
    const { stream, expected } = build([
      { text: '["1","1","room:1","phx_join",{}]', fragments: 1, pingInside: false },
      { text: 'DROP["2","2","room:2","phx_join",{}]', fragments: 2, pingInside: true },
      { text: '["3","3","room:1","ping",{}]', fragments: 1, pingInside: false },
    ]);
    for (let i = 1; i < stream.length; i++) expect(gate(stream, [i]).equals(expected)).toBe(true);
  });

  it("holds at most MAX_HOLD_BYTES of one message: a larger one goes through whole, even if it would be refused", () => {
    const big = `DROP${"x".repeat(MAX_HOLD_BYTES)}`;
    const { stream } = build([{ text: big, fragments: 1, pingInside: false }]);
    const cuts = Array.from({ length: Math.ceil(stream.length / 4096) }, (_, i) => i * 4096);
    expect(gate(stream, cuts).equals(stream)).toBe(true);
    expect(gate(stream, []).equals(stream)).toBe(true);
  });

  it("holds at most MAX_HOLD_PARTS reads of one message: one dribbled a byte per read goes through whole and its held cost stays bounded", () => {
    const { stream } = build([{ text: `DROP${"x".repeat(60_000)}`, fragments: 1, pingInside: false }]);
    let most = 0;
    const out = gate(stream, Array.from({ length: stream.length }, (_, i) => i), (g) => (most = Math.max(most, g.heldCost)));
    expect(out.equals(stream)).toBe(true);
    // without the bound: 60,008 parts (~6 MB of heap) for this one socket
    expect(most).toBeLessThanOrEqual((MAX_HOLD_PARTS + 1) * (1 + HELD_PART_COST_BYTES));
  });

  it("still cuts a refused join that arrives in fewer than MAX_HOLD_PARTS reads", () => {
    const join = 'DROP["2","2","room:2","phx_join",{}]';
    const { stream, expected } = build([{ text: join, fragments: 1, pingInside: false }, { text: "after", fragments: 1, pingInside: false }]);
    expect(gate(stream, Array.from({ length: stream.length }, (_, i) => i)).equals(expected)).toBe(true);
  });

  it("counts what it holds against the process-wide budget and gives it back as it forwards", () => {
    const budget = new HoldBudget(1 << 20);
    const { stream, expected } = build([{ text: 'DROP["2","2","room:2","phx_join",{}]', fragments: 3, pingInside: true }, { text: "kept", fragments: 1, pingInside: false }]);
    const seen: number[] = [];
    expect(gate(stream, [5, 20, 30], () => seen.push(budget.totalCost), budget).equals(expected)).toBe(true);
    expect(Math.max(...seen)).toBeGreaterThan(0);
    expect(budget.totalCost).toBe(0);
  });
});
