import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameReader, type FrameError, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
import { byteByByte, readAll, RecordingSink, splitAt, summarize, type SinkEvent } from "./recording-sink.js";
import { recordingSender, wsFrame, type WsSender } from "./ws-internals.js";

const BIG = 1 << 20;

interface Fixture {
  name: string;
  fromClient: boolean;
  bytes: Buffer;
  expected: SinkEvent[];
}

const text = (s: string): SinkEvent => ({ kind: "message", binary: false, data: Buffer.from(s) });
const binary = (data: Buffer): SinkEvent => ({ kind: "message", binary: true, data });

/** Builds the same scenario twice with ws's Sender: client→server (masked) and server→client. */
function bothDirections(name: string, script: (sender: WsSender, mask: boolean) => void, expected: SinkEvent[]): Fixture[] {
  return [true, false].map((fromClient) => {
    const { sender, bytes } = recordingSender();
    script(sender, fromClient);
    return { name: `${fromClient ? "a masked" : "an unmasked"} ${name}`, fromClient, bytes: bytes(), expected };
  });
}

const bin125 = randomBytes(125);
const bin126 = randomBytes(126);
const text65535 = "x".repeat(65_000) + "é".repeat(267) + "y";
const bin65536 = randomBytes(65_536);

const FIXTURES: Fixture[] = [
  ...bothDirections("text message with a 7-bit length", (s, mask) => s.send("hello", { fin: true, mask }), [text("hello")]),
  ...bothDirections("empty text message", (s, mask) => s.send("", { fin: true, mask }), [text("")]),
  ...bothDirections("binary message of 125 bytes", (s, mask) => s.send(bin125, { binary: true, fin: true, mask }), [binary(bin125)]),
  ...bothDirections("binary message with a 16-bit length", (s, mask) => s.send(bin126, { binary: true, fin: true, mask }), [binary(bin126)]),
  ...bothDirections("text message of 65535 bytes", (s, mask) => s.send(text65535, { fin: true, mask }), [text(text65535)]),
  ...bothDirections("binary message with a 64-bit length", (s, mask) => s.send(bin65536, { binary: true, fin: true, mask }), [binary(bin65536)]),
  ...bothDirections(
    "text message in three fragments with a ping and a pong between them",
    (s, mask) => {
      s.send('[null,"1","room:lobby",', { fin: false, mask });
      s.ping("are you there", mask);
      s.send('"phx_join",', { fin: false, mask });
      s.pong("", mask);
      s.send("{}]", { fin: true, mask });
    },
    [text('[null,"1","room:lobby","phx_join",{}]')],
  ),
  ...bothDirections(
    "binary message with empty fragments",
    (s, mask) => {
      s.send(Buffer.alloc(0), { binary: true, fin: false, mask });
      s.send(Buffer.from([1, 2, 3]), { binary: true, fin: false, mask });
      s.send(Buffer.alloc(0), { binary: true, fin: true, mask });
    },
    [binary(Buffer.from([1, 2, 3]))],
  ),
  ...bothDirections("close frame with a code and a reason", (s, mask) => s.close(1000, "bye", mask), [{ kind: "close", code: 1000 }]),
  ...bothDirections("close frame without a code", (s, mask) => s.close(undefined, undefined, mask), [{ kind: "close", code: undefined }]),
  ...bothDirections(
    "conversation ending in a close",
    (s, mask) => {
      s.send("one", { fin: true, mask });
      s.ping("", mask);
      s.send(bin126, { binary: true, fin: true, mask });
      s.send("tw", { fin: false, mask });
      s.ping("x", mask);
      s.send("o", { fin: true, mask });
      s.close(4001, "", mask);
    },
    [text("one"), binary(bin126), text("two"), { kind: "close", code: 4001 }],
  ),
];

function read(fixture: Fixture, chunks: readonly Buffer[]): string[] {
  return summarize(readAll(chunks, { fromClient: fixture.fromClient, deflate: null, maxMessageBytes: BIG }));
}

/** Every split point for fixtures up to 4 KiB; for larger ones every point in the first and last 300 bytes and every 61st between. */
function splitPoints(length: number): number[] {
  const points: number[] = [];
  for (let i = 0; i <= length; i++) {
    if (length <= 4096 || i < 300 || i > length - 300 || i % 61 === 0) points.push(i);
  }
  return points;
}

describe("FrameReader on frames written by ws's Sender", () => {
  describe.each(FIXTURES)("$name", (fixture) => {
    const expected = summarize(fixture.expected);

    it("delivers it from one chunk", () => {
      expect(read(fixture, [fixture.bytes])).toEqual(expected);
    });

    it("delivers it split at every byte offset", () => {
      for (const at of splitPoints(fixture.bytes.length)) {
        expect(read(fixture, splitAt(fixture.bytes, [at])), `split at ${at}`).toEqual(expected);
      }
    });

    it("delivers it one byte per push", () => {
      if (fixture.bytes.length > 70_000) return; // covered by the split and random-chunk tests
      expect(read(fixture, byteByByte(fixture.bytes))).toEqual(expected);
    });

    it("delivers it in random chunks and leaves every chunk untouched", () => {
      fc.assert(
        fc.property(fc.uniqueArray(fc.nat({ max: fixture.bytes.length }), { maxLength: 12 }), (cuts) => {
          const chunks = splitAt(Buffer.from(fixture.bytes), [...cuts].sort((a, b) => a - b));
          const copies = chunks.map((c) => Buffer.from(c));
          expect(read(fixture, chunks)).toEqual(expected);
          chunks.forEach((chunk, i) => expect(chunk.equals(copies[i]!)).toBe(true));
        }),
        { numRuns: 40 },
      );
    });
  });
});

describe("FrameReader delivery", () => {
  it("stops delivering a message when the sink returns false, and delivers the next one whole", () => {
    const { sender, bytes } = recordingSender();
    const first = "a".repeat(40_000);
    sender.send(first, { fin: false, mask: true });
    sender.send("b".repeat(10), { fin: true, mask: true });
    sender.send("second", { fin: true, mask: true });
    const chunks = splitAt(bytes(), [100, 20_000, 39_990]);
    const events = readAll(chunks, { fromClient: true, deflate: null, maxMessageBytes: BIG }, (index) => index !== 0);
    expect(events).toHaveLength(2);
    const [cut, whole] = events;
    expect(cut?.kind === "message" && first.startsWith(cut.data.toString())).toBe(true);
    expect(cut?.kind === "message" && cut.data.length).toBeLessThan(first.length);
    expect(whole).toEqual(text("second"));
  });

  it("delivers at most maxMessageBytes of a message (64 KiB by default)", () => {
    const { sender, bytes } = recordingSender();
    sender.send(Buffer.alloc(100_000, 7), { binary: true, fin: true, mask: true });
    sender.send("after", { fin: true, mask: true });
    const [big, after] = readAll([bytes()], { fromClient: true, deflate: null });
    expect(big?.kind === "message" && big.data.length).toBe(64 * 1024);
    expect(after).toEqual(text("after"));
    const [small] = readAll([bytes()], { fromClient: true, deflate: null, maxMessageBytes: 10 });
    expect(small).toEqual(binary(Buffer.alloc(10, 7)));
  });

  it.each([
    ["declines after the first piece", 1, [256]],
    ["declines after three pieces", 3, [256, 512, 1024]],
    ["wants it all", Infinity, [256, 512, 1024, 2048, 4096, 8192, 16384, 16384, 1104]],
  ])("unmasks only the bytes it delivers, in pieces growing from 256 bytes: a sink that %s", (_name, wantedPieces, pieces) => {
    const payload = Buffer.alloc(50_000, 1);
    const frame = wsFrame(payload, { fin: true, opcode: 2, mask: true, rsv1: false, maskKey: Buffer.from([1, 2, 3, 4]) });
    const seen: number[] = [];
    const sink: MessageSink = {
      onMessageStart() {},
      onMessageData(_data, start, end) {
        seen.push(end - start);
        return seen.length < wantedPieces;
      },
      onMessageEnd() {},
      onClose() {},
      onError() {},
    };
    new FrameReader(sink, { fromClient: true, deflate: null, maxMessageBytes: BIG }).push(frame);
    expect(seen).toEqual(pieces); // then the rest is skipped, never unmasked
  });

  it("reports the close code even when the close frame is split inside the code", () => {
    const frame = wsFrame(Buffer.from([0x0f, 0xa1, 0x62]), { fin: true, opcode: 8, mask: true, rsv1: false });
    for (let at = 0; at <= frame.length; at++) {
      expect(summarize(readAll(splitAt(frame, [at]), { fromClient: true, deflate: null }))).toEqual(["close:4001"]);
    }
  });

  it("ignores everything after a close frame", () => {
    const close = wsFrame(Buffer.alloc(0), { fin: true, opcode: 8, mask: false, rsv1: false });
    const garbage = Buffer.from([0xff, 0xff, 0xff]);
    expect(summarize(readAll([Buffer.concat([close, garbage]), garbage], { fromClient: false, deflate: null }))).toEqual([
      "close:undefined",
    ]);
  });

  it("stops quietly when the sink destroys the reader from a callback", () => {
    const frames = Buffer.concat([
      wsFrame(Buffer.from("one"), { fin: true, opcode: 1, mask: false, rsv1: false }),
      wsFrame(Buffer.from("two"), { fin: true, opcode: 1, mask: false, rsv1: false }),
    ]);
    const calls: string[] = [];
    const sink: MessageSink = {
      onMessageStart: () => void calls.push("start"),
      onMessageData: () => {
        calls.push("data");
        reader.destroy();
        return true;
      },
      onMessageEnd: () => void calls.push("end"),
      onClose: () => void calls.push("close"),
      onError: () => void calls.push("error"),
    };
    const reader = new FrameReader(sink, { fromClient: false, deflate: null });
    reader.push(frames);
    reader.push(frames);
    expect(calls).toEqual(["start", "data"]);
  });
});

/** A raw frame header: b0 (FIN/RSV/opcode), then the length byte and extended length bytes as given. */
const raw = (...bytes: number[]): Buffer => Buffer.from(bytes);

describe("FrameReader errors", () => {
  const cases: Array<[string, boolean, Buffer, string]> = [
    ["an unknown data opcode", false, raw(0x83, 0x00), "WS_ERR_INVALID_OPCODE"],
    ["an unknown control opcode", false, raw(0x8b, 0x00), "WS_ERR_INVALID_OPCODE"],
    ["a continuation with no message to continue", false, raw(0x80, 0x00), "WS_ERR_INVALID_OPCODE"],
    ["a new message inside a fragmented one", false, raw(0x01, 0x00, 0x81, 0x00), "WS_ERR_INVALID_OPCODE"],
    ["an unmasked client frame", true, raw(0x81, 0x00), "WS_ERR_EXPECTED_MASK"],
    ["a masked server frame", false, raw(0x81, 0x80, 1, 2, 3, 4), "WS_ERR_UNEXPECTED_MASK"],
    ["RSV1 without permessage-deflate", false, raw(0xc1, 0x00), "WS_ERR_UNEXPECTED_RSV_1"],
    ["RSV2 set", false, raw(0xa1, 0x00), "WS_ERR_UNEXPECTED_RSV_2_3"],
    ["a fragmented control frame", false, raw(0x09, 0x00), "WS_ERR_EXPECTED_FIN"],
    ["a control frame longer than 125 bytes", false, raw(0x89, 0x7e, 0x00, 0x7e), "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"],
    ["a close frame of one byte", false, raw(0x88, 0x01, 0x03), "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"],
    ["a close code that may not be sent", false, raw(0x88, 0x02, 0x03, 0xed), "WS_ERR_INVALID_CLOSE_CODE"],
    ["a 64-bit length above 2^53 - 1", false, raw(0x82, 0x7f, 0x00, 0x20, 0, 0, 0, 0, 0, 0), "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH"],
    ["a 64-bit length with the top bit set", true, raw(0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1), "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH"],
  ];

  it.each(cases)("reports %s", (_name, fromClient, bytes, code) => {
    const before = Buffer.from(bytes);
    for (const at of splitPoints(bytes.length)) {
      expect(summarize(readAll(splitAt(bytes, [at]), { fromClient, deflate: null }))).toEqual([`error:${code}`]);
    }
    expect(bytes.equals(before)).toBe(true);
  });

  it("reports a frame over maxFrameBytes before reading its payload", () => {
    const frame = wsFrame(Buffer.alloc(2000), { fin: true, opcode: 2, mask: false, rsv1: false });
    expect(summarize(readAll([frame.subarray(0, 4)], { fromClient: false, deflate: null, maxFrameBytes: 1000 }))).toEqual([
      "error:WS_ERR_FRAME_TOO_LARGE",
    ]);
  });

  it("delivers the messages before an error and nothing after it", () => {
    const good = wsFrame(Buffer.from("ok"), { fin: true, opcode: 1, mask: false, rsv1: false });
    const events = readAll([Buffer.concat([good, raw(0x83, 0x00), good]), good], { fromClient: false, deflate: null });
    expect(summarize(events)).toEqual(["text(2):ok", "error:WS_ERR_INVALID_OPCODE"]);
  });

  it("turns an exception thrown by the sink into WS_ERR_INTERNAL instead of throwing", () => {
    const errors: FrameError[] = [];
    const sink = new RecordingSink();
    sink.onMessageData = () => {
      throw new Error("sink bug");
    };
    sink.onError = (err) => void errors.push(err);
    const reader = new FrameReader(sink, { fromClient: false, deflate: null });
    const frame = wsFrame(Buffer.from("boom"), { fin: true, opcode: 1, mask: false, rsv1: false });
    expect(() => reader.push(frame)).not.toThrow();
    expect(() => reader.push(frame)).not.toThrow();
    expect(errors.map((e) => [e.code, e.closeCode])).toEqual([["WS_ERR_INTERNAL", 1011]]);
  });

  it("never throws on random bytes in either direction", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (chunks, fromClient) => {
        const buffers = chunks.map((c) => Buffer.from(c));
        const sink = new RecordingSink();
        const reader = new FrameReader(sink, { fromClient, deflate: null });
        for (const b of buffers) expect(() => reader.push(b)).not.toThrow();
        expect(sink.violations).toEqual([]);
      }),
      { numRuns: 500 },
    );
  });
});
