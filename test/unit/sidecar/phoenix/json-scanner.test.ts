import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JsonMessageScanner } from "../../../../sidecar/phoenix/json-scanner.js";
import { COMPLEX_REF, VSN_1, VSN_2, type PhoenixMessage, type PhoenixVsn } from "../../../../sidecar/phoenix/message.js";

function scan(vsn: PhoenixVsn, pieces: Buffer[]): PhoenixMessage | null {
  const scanner = new JsonMessageScanner();
  scanner.reset(vsn);
  for (const p of pieces) if (!scanner.write(p)) break;
  const out: PhoenixMessage = { joinRef: "x", ref: "x", topic: "x", event: "x", status: "x" };
  return scanner.finish(out) ? out : null;
}

/** Bytes around each piece that would change the result if they were read: quotes, escapes, brackets. */
const BEFORE = Buffer.from('"\\"]}');
const AFTER = Buffer.concat([Buffer.from('"]},\\"x'), Buffer.alloc(300, 0x61), Buffer.from('"]')]);

/** As {@link scan}, each piece given as a range of a larger buffer (as the frame reader delivers a chunk or its scratch). */
function scanRanges(vsn: PhoenixVsn, pieces: Buffer[]): PhoenixMessage | null {
  const scanner = new JsonMessageScanner();
  scanner.reset(vsn);
  for (const p of pieces) if (!scanner.write(Buffer.concat([BEFORE, p, AFTER]), BEFORE.length, BEFORE.length + p.length)) break;
  const out: PhoenixMessage = { joinRef: "x", ref: "x", topic: "x", event: "x", status: "x" };
  return scanner.finish(out) ? out : null;
}

/** The message cut at every pair of split points: each must read the same. */
function everySplit(text: string): Buffer[][] {
  const b = Buffer.from(text);
  const out: Buffer[][] = [[b]];
  for (let i = 1; i < b.length; i++) {
    out.push([b.subarray(0, i), b.subarray(i)]);
    const j = Math.min(b.length - 1, i + 7);
    if (j > i) out.push([b.subarray(0, i), b.subarray(i, j), b.subarray(j)]);
  }
  return out;
}

const cases: { name: string; vsn: PhoenixVsn; text: string; want: PhoenixMessage | null }[] = [
  {
    name: "a vsn 2 join",
    vsn: VSN_2,
    text: '["3","3","patterns:stream","phx_join",{"hello":"world"}]',
    want: { joinRef: "3", ref: "3", topic: "patterns:stream", event: "phx_join", status: null },
  },
  {
    name: "a vsn 2 ok reply whose status follows a nested response",
    vsn: VSN_2,
    text: '["3","3","room:1","phx_reply",{"response":{"a":[1,{"status":"error"}],"s":"x\\"y"},"status":"ok"}]',
    want: { joinRef: "3", ref: "3", topic: "room:1", event: "phx_reply", status: "ok" },
  },
  {
    name: "a vsn 2 heartbeat with a null join_ref",
    vsn: VSN_2,
    text: '[null,"7","phoenix","heartbeat",{}]',
    want: { joinRef: null, ref: "7", topic: "phoenix", event: "heartbeat", status: null },
  },
  {
    name: "a vsn 2 broadcast",
    vsn: VSN_2,
    text: '[null,null,"patterns:stats","bcast",{"body":"hi"}]',
    want: { joinRef: null, ref: null, topic: "patterns:stats", event: "bcast", status: null },
  },
  {
    name: "a vsn 1 reply with keys in the server's order (payload before ref and topic)",
    vsn: VSN_1,
    text: '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"patterns:stream"}',
    want: { joinRef: null, ref: "1", topic: "patterns:stream", event: "phx_reply", status: "ok" },
  },
  {
    name: "a vsn 1 join with join_ref and whitespace",
    vsn: VSN_1,
    text: '{ "topic" : "room:lobby", "event" : "phx_join", "payload" : {}, "ref" : "1", "join_ref" : "1" }',
    want: { joinRef: "1", ref: "1", topic: "room:lobby", event: "phx_join", status: null },
  },
  {
    name: "a vsn 1 phx_close with a null ref",
    vsn: VSN_1,
    text: '{"event":"phx_close","payload":{},"ref":null,"topic":"patterns:stream"}',
    want: { joinRef: null, ref: null, topic: "patterns:stream", event: "phx_close", status: null },
  },
  {
    name: "numeric refs as their decimal text",
    vsn: VSN_2,
    text: '[1,2,"room:1","phx_join",{}]',
    want: { joinRef: "1", ref: "2", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "an escaped topic decoded",
    vsn: VSN_2,
    text: '["1","1","room:caf\\u00e9","phx_join",{}]',
    want: { joinRef: "1", ref: "1", topic: "room:café", event: "phx_join", status: null },
  },
  {
    name: 'an event spelled "phx\\u005fjoin" as the join Jason decodes it to',
    vsn: VSN_2,
    text: '["1","1","room:1","phx\\u005fjoin",{}]',
    want: { joinRef: "1", ref: "1", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "escapes in every field and whitespace between every token",
    vsn: VSN_2,
    text: ' \t[ "\\u0031" ,\r\n"\\u0031"\n, "room\\u003a\\u0031" , "\\u0070hx_join" , { } ] ',
    want: { joinRef: "1", ref: "1", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a vsn 2 array with more than five elements (Phoenix ignores the rest)",
    vsn: VSN_2,
    text: '["1","1","room:1","phx_join",{},"extra",[1]]',
    want: { joinRef: "1", ref: "1", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a vsn 1 join with escaped keys in any order",
    vsn: VSN_1,
    text: '{"payload":{"topic":"decoy","event":"decoy"},"\\u0065vent":"phx_join","ref":"2","t\\u006fpic":"room:1","join\\u005fref":"2"}',
    want: { joinRef: "2", ref: "2", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a vsn 1 duplicate key by its last value, as Jason does",
    vsn: VSN_1,
    text: '{"event":"other","topic":"room:9","payload":{},"ref":"1","event":"phx_join","topic":"room:1"}',
    want: { joinRef: null, ref: "1", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a vsn 1 join whose ref is null (Phoenix requires the key, not a value)",
    vsn: VSN_1,
    text: '{"topic":"room:1","event":"phx_join","payload":{},"ref":null}',
    want: { joinRef: null, ref: null, topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "numeric refs by value: -0 is 0, 1e2 and 100.0 are one number",
    vsn: VSN_2,
    text: '[-0,1e2,"room:1","phx_join",{}]',
    want: { joinRef: "0", ref: "100", topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a container where a ref belongs as the complex ref",
    vsn: VSN_2,
    text: '[{"a":["x"]},["1"],"room:1","phx_join",{}]',
    want: { joinRef: COMPLEX_REF, ref: COMPLEX_REF, topic: "room:1", event: "phx_join", status: null },
  },
  {
    name: "a reply whose array payload holds literals and strings before its status",
    vsn: VSN_2,
    text: '["1","1","room:1","phx_reply",{"response":[1,"status",true,{"status":"error"}],"status":"ok"}]',
    want: { joinRef: "1", ref: "1", topic: "room:1", event: "phx_reply", status: "ok" },
  },
  { name: "a vsn 1 topic replaced by a later object as unparsed", vsn: VSN_1, text: '{"topic":"room:1","event":"phx_join","payload":{},"ref":"1","topic":{"a":1}}', want: null },
  { name: "a vsn 1 message without a ref key as unparsed", vsn: VSN_1, text: '{"topic":"room:1","event":"phx_join","payload":{}}', want: null },
  { name: "a vsn 2 array of four as unparsed", vsn: VSN_2, text: '["1","1","room:1","phx_join"]', want: null },
  { name: "a bad escape as unparsed", vsn: VSN_2, text: '["1","1","room:1","phx\\xjoin",{}]', want: null },
  { name: "a literal that is no JSON value as unparsed", vsn: VSN_2, text: '[01,"1","room:1","phx_join",{}]', want: null },
  { name: "a raw control character in a field as unparsed", vsn: VSN_2, text: '["1","1","room:\u00011","phx_join",{}]', want: null },
  { name: "text before the opening bracket as unparsed", vsn: VSN_2, text: 'x["1","1","room:1","phx_join",{}]', want: null },
  { name: "an object on a vsn 2 socket as unparsed", vsn: VSN_2, text: '{"topic":"a","event":"b"}', want: null },
  { name: "an array on a vsn 1 socket as unparsed", vsn: VSN_1, text: '["1","1","a","b",{}]', want: null },
  { name: "plain text as unparsed", vsn: VSN_2, text: "hello there", want: null },
  { name: "a truncated array as unparsed", vsn: VSN_2, text: '["1","1","room:1"', want: null },
  { name: "a topic that is not a string as unparsed", vsn: VSN_2, text: '["1","1",5,"phx_join",{}]', want: null },
  { name: "unbalanced closers as unparsed", vsn: VSN_2, text: ']]', want: null },
];

describe("JsonMessageScanner", () => {
  for (const c of cases) {
    it(`reads ${c.name} at every split point`, () => {
      for (const pieces of everySplit(c.text)) {
        expect(scan(c.vsn, pieces)).toEqual(c.want);
        expect(scanRanges(c.vsn, pieces)).toEqual(c.want);
      }
    });
  }

  it("stops reading a vsn 2 broadcast at its payload", () => {
    const scanner = new JsonMessageScanner();
    scanner.reset(VSN_2);
    expect(scanner.write(Buffer.from('[null,null,"room:1","new_msg",{"body":'))).toBe(false);
  });

  it("gives up on a run of zero bytes at its first byte, so the rest is skipped unread", () => {
    for (const vsn of [VSN_1, VSN_2] as const) {
      for (const prefix of ["", "[", '["1",', "{", '{"topic":']) {
        const scanner = new JsonMessageScanner();
        scanner.reset(vsn);
        expect(scanner.write(Buffer.concat([Buffer.from(prefix), Buffer.alloc(1 << 20)]))).toBe(false);
        expect(scanner.finish({ joinRef: null, ref: null, topic: "", event: "", status: null })).toBe(false);
      }
    }
  });

  it("reads a 60 KiB topic, and says a field past 64 KiB leaves the message undecided", () => {
    const long = "room:" + "x".repeat(60_000);
    expect(scan(VSN_2, [Buffer.from(`["1","1","${long}","phx_join",{}]`)])?.topic).toBe(long);
    const scanner = new JsonMessageScanner();
    scanner.reset(VSN_2);
    scanner.write(Buffer.from(`["1","1","room:${"x".repeat(70_000)}","phx_join",{}]`));
    expect(scanner.complete()).toBe(false);
    expect(scanner.undecided).toBe(true);
    scanner.reset(VSN_2);
    expect(scanner.undecided).toBe(false);
  });

  it("keeps reading a vsn 2 reply until its status, however large the response", () => {
    const big = "x".repeat(200_000);
    const text = `["1","1","room:1","phx_reply",{"response":{"history":"${big}"},"status":"error"}]`;
    const b = Buffer.from(text);
    const pieces = [];
    for (let i = 0; i < b.length; i += 4096) pieces.push(b.subarray(i, i + 4096));
    expect(scan(VSN_2, pieces)?.status).toBe("error");
    expect(scanRanges(VSN_2, pieces)?.status).toBe("error");
  });

  it("finds the same fields for any JSON payload and any chunking (property)", () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.option(fc.string({ maxLength: 8 })),
        fc.constantFrom("phx_join", "phx_reply", "phx_leave", "custom"),
        fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 20 }),
        (payload, topic, ref, event, cuts) => {
          const response = event === "phx_reply" ? { response: payload, status: "ok" } : payload;
          const text = JSON.stringify([ref, ref, topic, event, response]);
          const b = Buffer.from(text);
          const pieces: Buffer[] = [];
          let at = 0;
          for (const n of cuts) {
            if (at >= b.length) break;
            pieces.push(b.subarray(at, at + n));
            at += n;
          }
          if (at < b.length) pieces.push(b.subarray(at));
          const want = { joinRef: ref, ref, topic, event, status: event === "phx_reply" ? "ok" : null };
          expect(scan(VSN_2, pieces)).toEqual(want);
          expect(scanRanges(VSN_2, pieces)).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });
});
