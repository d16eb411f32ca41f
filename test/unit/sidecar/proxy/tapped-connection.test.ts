import { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { ChannelLedger, KIND_WEBSOCKET } from "../../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";
import { VSN_2 } from "../../../../sidecar/phoenix/message.js";
import { TappedConnection } from "../../../../sidecar/proxy/tapped-connection.js";
import { FrameReader, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
import { wsFrame } from "../ws/ws-internals.js";

/** One side of the relay: what the test pushes in comes out as 'data'; what the relay writes is recorded. */
function endpoint(): { socket: Duplex; written: Buffer[] } {
  const written: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(Buffer.from(chunk));
      cb();
    },
  });
  return { socket, written };
}

const text = (s: string, masked: boolean) => wsFrame(Buffer.from(s), { fin: true, opcode: 1, mask: masked, rsv1: false });
const tick = () => new Promise((r) => setImmediate(r));

/** The text messages in a server→client byte stream, in order. */
function messages(bytes: Buffer): string[] {
  const out: string[] = [];
  let current = "";
  const sink: MessageSink = {
    onMessageStart: () => void (current = ""),
    onMessageData: (d) => ((current += d.toString()), true),
    onMessageEnd: () => void out.push(current),
    onClose: () => {},
    onError: (e) => {
      throw e;
    },
  };
  new FrameReader(sink, { fromClient: false, deflate: null, maxMessageBytes: Infinity }).push(bytes);
  return out;
}

describe("TappedConnection", () => {
  it("answers a refused join between two server messages, never inside one, and the app never sees the join", async () => {
    const ledger = new ChannelLedger(new TopicGroups([{ match: "room:*", maxChannels: 0 }]));
    const client = endpoint();
    const app = endpoint();
    const observer = { onUnparsed: () => {}, onConnectionClosed: () => {} };
    new TappedConnection(client.socket, app.socket, ledger.openSocket(KIND_WEBSOCKET), VSN_2, null, observer, 0).start();

    const big = text(`[null,null,"patterns:x","bcast",{"body":"${"y".repeat(5000)}"}]`, false);
    app.socket.push(big.subarray(0, 1000)); // the app is in the middle of a message...
    await tick();
    client.socket.push(text('["1","1","room:1","phx_join",{}]', true)); // ...when an over-budget join arrives
    client.socket.push(text('["1","2","patterns:x","ping",{}]', true));
    await tick();
    app.socket.push(Buffer.concat([big.subarray(1000), text('[null,"2","patterns:x","phx_reply",{"response":{},"status":"ok"}]', false)]));
    await tick();

    expect(messages(Buffer.concat(client.written))).toEqual([
      `[null,null,"patterns:x","bcast",{"body":"${"y".repeat(5000)}"}]`,
      '["1","1","room:1","phx_reply",{"response":{"reason":"capacity"},"status":"error"}]',
      '[null,"2","patterns:x","phx_reply",{"response":{},"status":"ok"}]',
    ]);
    // only the ping reached the app (frames are masked, so compare lengths)
    expect(Buffer.concat(app.written).length).toBe(text('["1","2","patterns:x","ping",{}]', true).length);
    expect(ledger.joinsByResult[2]).toBe(1);
  });
});
