import { describe, expect, it } from "vitest";
import { PhoenixDecoder, type PhoenixMessageHandler } from "../../../../sidecar/phoenix/phoenix-decoder.js";
import { VSN_1, VSN_2, type PhoenixMessage, type PhoenixVsn } from "../../../../sidecar/phoenix/message.js";

function recorder(awaits = true) {
  const seen: string[] = [];
  const handler: PhoenixMessageHandler = {
    onPhoenixMessage: (m: PhoenixMessage) => void seen.push(`msg ${m.event} ${m.topic} ${m.ref} ${m.status}`),
    onOtherMessage: () => void seen.push("other"),
    onUnparsed: () => void seen.push("unparsed"),
    onCloseFrame: () => {},
    onStreamError: () => {},
    awaitsReplies: () => awaits,
  };
  return { seen, handler };
}

function feed(decoder: PhoenixDecoder, binary: boolean, bytes: Buffer): void {
  decoder.onMessageStart(binary);
  for (let i = 0; i < bytes.length; i += 3) if (!decoder.onMessageData(bytes.subarray(i, i + 3))) break;
  decoder.onMessageEnd();
}

/** vsn 2 binary reply: kind 1, sizes of join_ref, ref, topic, status, the fields, the payload. */
function binaryReply(joinRef: string, ref: string, topic: string, status: string): Buffer {
  const fields = [joinRef, ref, topic, status].map((f) => Buffer.from(f));
  return Buffer.concat([Buffer.from([1, ...fields.map((f) => f.length)]), ...fields, Buffer.from([9, 9, 9])]);
}

describe("PhoenixDecoder", () => {
  it("reads a vsn 2 binary reply's status from its header, split every 3 bytes", () => {
    const { seen, handler } = recorder();
    feed(new PhoenixDecoder(VSN_2, false, handler), true, binaryReply("1", "1", "room:1", "ok"));
    expect(seen).toEqual(["msg phx_reply room:1 1 ok"]);
  });

  it.each([VSN_1] as PhoenixVsn[])("counts a binary frame on a vsn %s socket as unparsed, never as a message", (vsn) => {
    const { seen, handler } = recorder();
    feed(new PhoenixDecoder(vsn, false, handler), true, binaryReply("1", "1", "room:1", "ok"));
    expect(seen).toEqual(["unparsed"]);
  });

  it("passes lifecycle events on and reports pushes and broadcasts as other messages, undecoded", () => {
    const { seen, handler } = recorder();
    const client = new PhoenixDecoder(VSN_2, true, handler);
    feed(client, false, Buffer.from('["1","1","room:1","phx_join",{}]'));
    feed(client, false, Buffer.from('["1","2","room:1","new_msg",{"body":"hi"}]'));
    const server = new PhoenixDecoder(VSN_2, false, handler);
    feed(server, false, Buffer.from('[null,null,"room:1","new_msg",{"body":"hi"}]'));
    feed(server, false, Buffer.from('["1","1","room:1","phx_close",{}]'));
    expect(seen).toEqual(["msg phx_join room:1 1 null", "other", "other", "msg phx_close room:1 1 null"]);
  });

  it('passes on a join whose event is spelled "phx\\u005fjoin", and a reply spelled "phx\\u005freply"', () => {
    const { seen, handler } = recorder();
    feed(new PhoenixDecoder(VSN_2, true, handler), false, Buffer.from('["1","1","room:1","phx\\u005fjoin",{}]'));
    feed(new PhoenixDecoder(VSN_1, true, handler), false, Buffer.from('{"topic":"room:2","\\u0065vent":"\\u0070hx_join","payload":{},"ref":"2"}'));
    feed(new PhoenixDecoder(VSN_2, false, handler), false, Buffer.from('["1","1","room:1","phx\\u005freply",{"status":"\\u006fk"}]'));
    expect(seen).toEqual(["msg phx_join room:1 1 null", "msg phx_join room:2 2 null", "msg phx_reply room:1 1 ok"]);
  });

  it("reports a message whose topic is too long to read as unparsed and undecided", () => {
    const { seen, handler } = recorder();
    handler.onUndecided = () => void seen.push("undecided");
    feed(new PhoenixDecoder(VSN_2, true, handler), false, Buffer.from(`["1","1","room:${"x".repeat(70_000)}","phx_join",{}]`));
    expect(seen).toEqual(["unparsed", "undecided"]);
  });

  it("does not read replies while nothing awaits one", () => {
    const { seen, handler } = recorder(false);
    feed(new PhoenixDecoder(VSN_2, false, handler), false, Buffer.from('["1","7","room:1","phx_reply",{"response":{},"status":"ok"}]'));
    expect(seen).toEqual(["other"]);
  });
});
