import { Duplex } from "node:stream";
import { constants, deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ChannelLedger, KIND_WEBSOCKET } from "../../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";
import { VSN_2 } from "../../../../sidecar/phoenix/message.js";
import { MAX_INFLATED_MESSAGE_BYTES, TappedConnection } from "../../../../sidecar/proxy/tapped-connection.js";
import { FrameReader, type DeflateParams, type MessageSink } from "../../../../sidecar/ws/frame-reader.js";
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
    onMessageData: (d, start, end) => ((current += d.toString("utf8", start, end)), true),
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
    const observer = { onUnparsed: () => {}, onUninspected: () => {}, onConnectionClosed: () => {} };
    new TappedConnection(client.socket, app.socket, ledger.openSocket(KIND_WEBSOCKET), VSN_2, null, observer, 0).start();

    const big = text(`[null,null,"patterns:x","bcast",{"body":"${"y".repeat(5000)}"}]`, false);
    app.socket.push(big.subarray(0, 1000)); // the app is in the middle of a message...
    await tick();
    client.socket.push(text('["1","1","room:1","phx_join",{}]', true)); // ...when an over-budget join arrives
    const ping = text('["1","2","patterns:x","ping",{}]', true);
    client.socket.push(ping);
    await tick();
    app.socket.push(Buffer.concat([big.subarray(1000), text('[null,"2","patterns:x","phx_reply",{"response":{},"status":"ok"}]', false)]));
    await tick();

    expect(messages(Buffer.concat(client.written))).toEqual([
      `[null,null,"patterns:x","bcast",{"body":"${"y".repeat(5000)}"}]`,
      '["1","1","room:1","phx_reply",{"response":{"reason":"capacity"},"status":"error"}]',
      '[null,"2","patterns:x","phx_reply",{"response":{},"status":"ok"}]',
    ]);
    // only the ping reached the app, byte for byte
    expect(Buffer.concat(app.written)).toEqual(ping);
    expect(ledger.joinsByResult[2]).toBe(1);
  });

  it("with the tap off relays both ways byte for byte and counts nothing (the benchmark's bare relay)", async () => {
    const ledger = new ChannelLedger(new TopicGroups([{ match: "room:*", maxChannels: 0 }]));
    const client = endpoint();
    const app = endpoint();
    const observer = { onUnparsed: () => {}, onUninspected: () => {}, onConnectionClosed: () => {} };
    new TappedConnection(client.socket, app.socket, ledger.openSocket(KIND_WEBSOCKET), VSN_2, null, observer, 0, { tap: false }).start();
    const join = text('["1","1","room:1","phx_join",{}]', true);
    const reply = text('["1","1","room:1","phx_reply",{"response":{},"status":"ok"}]', false);
    client.socket.push(join);
    app.socket.push(reply);
    await tick();
    expect(Buffer.concat(app.written)).toEqual(join); // over budget, but nothing is refused
    expect(Buffer.concat(client.written)).toEqual(reply);
    expect(ledger.channels).toBe(0);
    expect([...ledger.joinsByResult]).toEqual(Array(ledger.joinsByResult.length).fill(0));
  });

  it("relays a deflate bomb unchanged while inflating it a slice per turn, then reports the socket's compressed messages uninspected", async () => {
    const deflate: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
    const compressed = (data: Buffer) => {
      const z = deflateRawSync(data, { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
      return wsFrame(z.subarray(0, z.length - 4), { fin: true, opcode: 1, mask: true, rsv1: true });
    };
    const ledger = new ChannelLedger(new TopicGroups([]));
    const client = endpoint();
    const app = endpoint();
    const reports: string[] = [];
    const observer = {
      onUnparsed: () => {},
      onUninspected: (c: TappedConnection, fromClient: boolean, lost: boolean) => {
        c.uninspected = lost;
        reports.push(`${fromClient ? "c2s" : "s2c"} lost=${lost}`);
      },
      onConnectionClosed: () => {},
    };
    const connection = new TappedConnection(client.socket, app.socket, ledger.openSocket(KIND_WEBSOCKET), VSN_2, deflate, observer, 0);
    connection.start();
    const reply = (ref: string, topic: string) => text(`["${ref}","${ref}","${topic}","phx_reply",{"response":{},"status":"ok"}]`, false);

    client.socket.push(compressed(Buffer.from('["1","1","room:1","phx_join",{}]')));
    await tick();
    app.socket.push(reply("1", "room:1"));
    await tick();
    expect(ledger.channels).toBe(1);

    // 4x the cap of zeros in one read: forwarded at once, then inflated up to the cap in slices.
    const bomb = compressed(Buffer.alloc(4 * MAX_INFLATED_MESSAGE_BYTES));
    const sentBefore = Buffer.concat(app.written).length;
    client.socket.push(bomb);
    await tick();
    expect(Buffer.concat(app.written).subarray(sentBefore).equals(bomb)).toBe(true);
    let turns = 0;
    while (reports.length === 0 && turns < 10_000) {
      await tick();
      turns++;
    }
    expect(reports).toEqual(["c2s lost=true"]);
    expect(turns).toBeGreaterThan(10); // other work ran between the slices
    expect(connection.uninspected).toBe(true);

    // The window is gone: a later compressed join is relayed but cannot be read, and says so.
    const join2 = compressed(Buffer.from('["2","2","room:2","phx_join",{}]'));
    client.socket.push(join2);
    await tick();
    app.socket.push(reply("2", "room:2"));
    await tick();
    expect(reports).toEqual(["c2s lost=true", "c2s lost=true"]);
    expect(Buffer.concat(app.written).subarray(-join2.length).equals(join2)).toBe(true);
    expect(ledger.channels).toBe(1); // room:1 stays counted; room:2 was not seen (the gauge says so)
    // uncompressed messages are still read
    client.socket.push(text('["3","3","room:3","phx_join",{}]', true));
    await tick();
    app.socket.push(reply("3", "room:3"));
    await tick();
    expect(ledger.channels).toBe(2);
  });

  it("queues a refused join's reply while a large compressed server message is still being inflated, and writes it after that message", async () => {
    const deflate: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: true, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
    const ledger = new ChannelLedger(new TopicGroups([{ match: "room:*", maxChannels: 0 }]));
    const client = endpoint();
    const app = endpoint();
    const observer = { onUnparsed: () => {}, onUninspected: () => {}, onConnectionClosed: () => {} };
    new TappedConnection(client.socket, app.socket, ledger.openSocket(KIND_WEBSOCKET), VSN_2, deflate, observer, 0).start();
    const body = `[null,null,"patterns:x","bcast",{"body":"${"y".repeat(3 * 1024 * 1024)}"}]`;
    const z = deflateRawSync(Buffer.from(body), { finishFlush: constants.Z_SYNC_FLUSH });
    const big = wsFrame(z.subarray(0, z.length - 4), { fin: true, opcode: 1, mask: false, rsv1: true });

    await tick(); // both sockets flowing: a push is read at once
    app.socket.push(big); // inflated a slice per turn...
    client.socket.push(text('["1","1","room:1","phx_join",{}]', true)); // ...while an over-budget join arrives
    for (let i = 0; i < 100; i++) await tick();

    const out: string[] = [];
    let current: Buffer[] = [];
    const sink: MessageSink = {
      onMessageStart: () => void (current = []),
      onMessageData: (d, start, end) => (current.push(Buffer.from(d.subarray(start, end))), true),
      onMessageEnd: () => void out.push(Buffer.concat(current).toString()),
      onClose: () => {},
      onError: (e) => {
        throw e;
      },
    };
    new FrameReader(sink, { fromClient: false, deflate, maxMessageBytes: Infinity }).push(Buffer.concat(client.written));
    expect(out).toEqual([body, '["1","1","room:1","phx_reply",{"response":{"reason":"capacity"},"status":"error"}]']);
    expect(app.written).toEqual([]); // the join never reached the app
  });
});
