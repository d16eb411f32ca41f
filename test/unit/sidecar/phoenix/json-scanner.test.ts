import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JsonMessageScanner } from "../../../../sidecar/phoenix/json-scanner.js";
import { VSN_1, VSN_2, type PhoenixMessage, type PhoenixVsn } from "../../../../sidecar/phoenix/message.js";

function scan(vsn: PhoenixVsn, pieces: Buffer[]): PhoenixMessage | null {
  const scanner = new JsonMessageScanner();
  scanner.reset(vsn);
  for (const p of pieces) if (!scanner.write(p)) break;
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
      for (const pieces of everySplit(c.text)) expect(scan(c.vsn, pieces)).toEqual(c.want);
    });
  }

  it("stops reading a vsn 2 broadcast at its payload", () => {
    const scanner = new JsonMessageScanner();
    scanner.reset(VSN_2);
    expect(scanner.write(Buffer.from('[null,null,"room:1","new_msg",{"body":'))).toBe(false);
  });

  it("keeps reading a vsn 2 reply until its status, however large the response", () => {
    const big = "x".repeat(200_000);
    const text = `["1","1","room:1","phx_reply",{"response":{"history":"${big}"},"status":"error"}]`;
    const b = Buffer.from(text);
    const pieces = [];
    for (let i = 0; i < b.length; i += 4096) pieces.push(b.subarray(i, i + 4096));
    expect(scan(VSN_2, pieces)?.status).toBe("error");
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
          expect(scan(VSN_2, pieces)).toEqual({ joinRef: ref, ref, topic, event, status: event === "phx_reply" ? "ok" : null });
        },
      ),
      { numRuns: 300 },
    );
  });
});
