import { constants, deflateRawSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChannelLedger, KIND_WEBSOCKET, type SocketChannels } from "../../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";
import { PhoenixDecoder, type PhoenixMessageHandler } from "../../../../sidecar/phoenix/phoenix-decoder.js";
import { VSN_1, VSN_2, type PhoenixMessage } from "../../../../sidecar/phoenix/message.js";
import { FrameReader, type DeflateParams } from "../../../../sidecar/ws/frame-reader.js";
import { wsFrame } from "../ws/ws-internals.js";
import { ModelSocket, prng, spell, wireValue, type ClientMessage } from "./phoenix-model.js";

// The ledger, fed the bytes of a conversation however they are split and compressed, must
// hold exactly the channels a Phoenix socket (ModelSocket) holds, whatever JSON spelling the
// client used. Messages Phoenix cannot decode crash its socket, so they only end a conversation.

const TOPICS = ["room:1", "room:2", "room:caf\u00e9/x", "denied:1", "nomatch:1", "phoenix"];
const EVENTS = ["phx_join", "phx_join", "phx_join", "phx_leave", "ping", "heartbeat"];
/**
 * Client messages with refs unique in the conversation, as every Phoenix client makes them
 * (a reply is matched to its message by topic and ref; two in-flight messages of one topic
 * with one ref cannot be told apart, by the client either). A ref is a string or a number,
 * or null once per topic; a join_ref is null, the message's own ref (a join, as phoenix.js
 * does) or an earlier message's ref (maybe stale).
 */
const messagesArb: fc.Arbitrary<ClientMessage[]> = fc
  .array(
    fc.record({
      topic: fc.constantFrom(...TOPICS),
      event: fc.constantFrom(...EVENTS),
      refSpelling: fc.constantFrom("string", "number", "null"),
      joinRefOf: fc.option(fc.nat({ max: 30 }), { nil: null }),
      payload: fc.constantFrom({}, { topic: "room:9", event: "phx_join", status: "ok", list: [1, "ref", { join_ref: null }] }),
    }),
    { minLength: 1, maxLength: 25 },
  )
  .map((specs) => {
    const nullRefTopics = new Set<string>();
    const refs: unknown[] = [];
    return specs.map((spec, i) => {
      let ref: unknown = spec.refSpelling === "number" ? i + 1 : String(i + 1);
      if (spec.refSpelling === "null" && !nullRefTopics.has(spec.topic)) {
        nullRefTopics.add(spec.topic);
        ref = null;
      }
      refs.push(ref);
      const joinRef = spec.joinRefOf === null ? null : spec.event === "phx_join" || spec.joinRefOf >= i ? ref : refs[spec.joinRefOf];
      return { joinRef, ref, topic: spec.topic, event: spec.event, payload: spec.payload };
    });
  });
/** Bytes Phoenix cannot decode; each is unparsed by the sidecar. */
const INVALID = [
  Buffer.alloc(3000),
  Buffer.from("hello there"),
  Buffer.from('["1","1","room:1"'),
  Buffer.from('["1","1","room:1","phx_join"]'),
  Buffer.from('{"topic":"room:1","event":"phx_join","payload":{}}'),
  Buffer.from('["1","1","room:1","phx\\qjoin",{}]'),
];

const DEFLATE: DeflateParams = { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

interface Conversation {
  /** Client→server bytes, and per message the offset where it ends. */
  c2s: Buffer;
  /** Server→client bytes, and for each reply byte range the c2s offset it waits for. */
  s2c: Buffer;
  causes: { s2cEnd: number; c2sEnd: number }[];
  model: ModelSocket;
  invalid: number;
}

function frame(text: Buffer, fromClient: boolean, compress: boolean): Buffer {
  const data = compress ? deflateRawSync(text, { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4) : text;
  return wsFrame(data, { fin: true, opcode: 1, mask: fromClient, rsv1: compress });
}

function converse(vsn: 1 | 2, messages: ClientMessage[], seed: number, invalidTail: number[], compress: boolean): Conversation {
  const rnd = prng(seed);
  const model = new ModelSocket(vsn);
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const causes: { s2cEnd: number; c2sEnd: number }[] = [];
  let c2sLen = 0;
  let s2cLen = 0;
  const texts = messages.map((m) => Buffer.from(spell(wireValue(m, vsn, rnd() < 0.2), rnd)));
  for (const i of invalidTail) texts.push(INVALID[i]!);
  for (const text of texts) {
    const f = frame(text, true, compress);
    c2s.push(f);
    c2sLen += f.length;
    for (const reply of model.handle(text.toString())) {
      const r = frame(Buffer.from(reply), false, compress);
      s2c.push(r);
      s2cLen += r.length;
      causes.push({ s2cEnd: s2cLen, c2sEnd: c2sLen });
    }
  }
  return { c2s: Buffer.concat(c2s), s2c: Buffer.concat(s2c), causes, model, invalid: invalidTail.length };
}

/** The sidecar's reading of one connection: a frame reader and decoder per direction into one socket's ledger. */
function sidecarSide(vsn: 1 | 2, compress: boolean) {
  const ledger = new ChannelLedger(new TopicGroups());
  const channels: SocketChannels = ledger.openSocket(KIND_WEBSOCKET);
  let unparsed = 0;
  const handler: PhoenixMessageHandler = {
    onPhoenixMessage: (msg: PhoenixMessage, fromClient: boolean) => (fromClient ? channels.onClientMessage(msg) : channels.onServerMessage(msg)),
    onOtherMessage: () => {},
    onUnparsed: (fromClient) => void (fromClient && unparsed++),
    awaitsReplies: () => channels.awaitsReplies,
    onCloseFrame: () => {},
    onStreamError: () => {
      throw new Error("stream error");
    },
  };
  const v = vsn === 2 ? VSN_2 : VSN_1;
  const deflate = compress ? DEFLATE : null;
  const c2s = new FrameReader(new PhoenixDecoder(v, true, handler), { fromClient: true, deflate, maxMessageBytes: Infinity });
  const s2c = new FrameReader(new PhoenixDecoder(v, false, handler), { fromClient: false, deflate, maxMessageBytes: Infinity });
  return { ledger, channels, c2s, s2c, unparsed: () => unparsed };
}

/**
 * Feeds both directions cut at `cuts` (fractions of each stream), in a random order that
 * keeps causality: a server byte goes only after the client message it answers.
 */
async function feed(conv: Conversation, side: ReturnType<typeof sidecarSide>, cuts: number[], order: boolean[]): Promise<void> {
  const pieces = (b: Buffer) => {
    const at = [...new Set(cuts.map((c) => Math.floor(c * b.length)))].sort((x, y) => x - y);
    const out: Buffer[] = [];
    let from = 0;
    for (const a of [...at, b.length]) if (a > from) out.push(b.subarray(from, (from = a)));
    return out;
  };
  const c = pieces(conv.c2s);
  const s = pieces(conv.s2c);
  let cFed = 0;
  let sFed = 0;
  let turn = 0;
  const needs = (end: number) => conv.causes.filter((x) => x.s2cEnd - 1 >= end - 1).reduce((m, x) => (x.s2cEnd > sFed ? Math.max(m, x.c2sEnd) : m), 0);
  while (c.length > 0 || s.length > 0) {
    const next = s[0];
    const sAllowed = next !== undefined && needs(sFed + next.length) <= cFed;
    if (sAllowed && (c.length === 0 || order[turn++ % Math.max(1, order.length)] === true)) {
      side.s2c.push(next);
      sFed += next.length;
      s.shift();
    } else {
      const chunk = c.shift()!;
      side.c2s.push(chunk);
      cFed += chunk.length;
    }
    await settle();
  }
}

/** Lets any inflate work the reader spreads over turns of the event loop finish. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

const topicsOf = (ledger: ChannelLedger) => Object.fromEntries([...ledger.topics()].sort());
const modelTopics = (model: ModelSocket) => Object.fromEntries([...model.channels.keys()].sort().map((t) => [t, 1]));

describe.each([
  { vsn: 2 as const, compress: false },
  { vsn: 2 as const, compress: true },
  { vsn: 1 as const, compress: false },
  { vsn: 1 as const, compress: true },
])("the ledger against Phoenix's own reading (vsn $vsn, permessage-deflate $compress)", ({ vsn, compress }) => {
  it("holds exactly the channels Phoenix holds, for any spelling of any messages, split anywhere (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        messagesArb,
        fc.nat(),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 30 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat({ max: INVALID.length - 1 }), { maxLength: 2 }),
        async (messages, seed, cuts, order, invalidTail) => {
          const conv = converse(vsn, messages, seed, invalidTail, compress);
          const side = sidecarSide(vsn, compress);
          await feed(conv, side, cuts, order);
          expect(topicsOf(side.ledger)).toEqual(modelTopics(conv.model));
          expect(side.ledger.joinsByResult[0]).toBe(conv.model.okJoins);
          expect(side.channels.pendingJoinCount).toBe(invalidTail.length > 0 ? side.channels.pendingJoinCount : 0);
          expect(side.unparsed()).toBe(conv.invalid);
          side.channels.close();
          expect(side.ledger.channels).toBe(0);
        },
      ),
      { numRuns: compress ? 150 : 300 },
    );
  });
});

describe("the reference itself", () => {
  it("spells a message so that JSON.parse reads back the same value", () => {
    fc.assert(
      fc.property(messagesArb, fc.nat(), fc.constantFrom(1 as const, 2 as const), (messages, seed, vsn) => {
        const value = wireValue(messages[0]!, vsn, false);
        const normal = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown; // -0 is 0, as Jason reads it
        expect(normal(JSON.parse(spell(value, prng(seed))))).toEqual(normal(value));
      }),
      { numRuns: 300 },
    );
  });

  it("answers a duplicate join with the new reply, then the old channel's phx_close", () => {
    const model = new ModelSocket(2);
    model.handle('["1","1","room:1","phx_join",{}]');
    expect(model.handle('["3","3","room:1","phx_join",{}]')).toEqual([
      '["3","3","room:1","phx_reply",{"response":{},"status":"ok"}]',
      '["1","1","room:1","phx_close",{}]',
    ]);
  });
});
