import { createHash } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { ChannelLedger, KIND_WEBSOCKET } from "../../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";
import { VSN_2 } from "../../../../sidecar/phoenix/message.js";
import { ReadSlab, readIntoSharedBuffer } from "../../../../sidecar/proxy/shared-reads.js";
import { TappedConnection } from "../../../../sidecar/proxy/tapped-connection.js";
import { wsFrame } from "../ws/ws-internals.js";

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

function listen(onSocket: (s: Socket) => void): Promise<number> {
  const server = createServer((s) => {
    sockets.push(s);
    onSocket(s);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)));
}

function dial(port: number): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  sockets.push(s);
  return new Promise((resolve, reject) => s.once("connect", () => resolve(s)).once("error", reject));
}

const sha = (parts: Buffer[]) => createHash("sha256").update(Buffer.concat(parts)).digest("hex");

/** Text frames of varied sizes and contents; client frames masked, as a browser sends them. */
function frames(count: number, fromClient: boolean, seed: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const size = [40, 700, 16 * 1024, 45_000][(i + seed) % 4]!;
    const body = String.fromCharCode(97 + ((i * 7 + seed) % 26)).repeat(size);
    const msg = fromClient && i % 5 === 0 ? `["${i}","${i}","room:${i}","phx_join",{}]` : `[null,"${i}","room:x","msg",{"b":"${body}"}]`;
    out.push(wsFrame(Buffer.from(msg), { fin: true, opcode: 1, mask: fromClient, rsv1: false }));
  }
  return out;
}

describe("reads into the process-wide buffer", () => {
  it("switches accepted and connected TCP sockets on this Node; reads, pause, resume and end work as before", async () => {
    let accepted!: Socket;
    const port = await listen((s) => (accepted = s));
    const client = await dial(port);
    await new Promise((r) => setImmediate(r));
    const got: Buffer[] = [];
    // A Node that renamed the fields Node 24 has would fail here, not silently lose the speed.
    expect(readIntoSharedBuffer(accepted, (b) => got.push(Buffer.from(b)))).toBe(true);
    expect(readIntoSharedBuffer(client, () => {})).toBe(true);
    accepted.pause();
    client.write("paused");
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([]); // not read while paused
    accepted.resume();
    const ended = new Promise((r) => accepted.once("end", r));
    client.end("-then-ended");
    await ended;
    expect(Buffer.concat(got).toString()).toBe("paused-then-ended");
  });

  it("leaves what is not a plain TCP socket alone", () => {
    expect(readIntoSharedBuffer(new PassThrough(), () => {})).toBe(false);
  });
});

describe("ReadSlab", () => {
  it("reuses a copy given back, and never overwrites a copy that was kept", () => {
    const slab = new ReadSlab();
    const kept = slab.copy(Buffer.from("kept-bytes"));
    const a = slab.copy(Buffer.from("aaaa"));
    slab.giveBack(a);
    const b = slab.copy(Buffer.from("bbbb"));
    expect(b.byteOffset).toBe(a.byteOffset); // a's bytes reused
    slab.giveBack(kept); // not the last copy: nothing is given back
    for (let i = 0; i < 100; i++) slab.giveBack(slab.copy(Buffer.alloc(20_000, i))); // moves on to new slabs
    expect(kept.toString()).toBe("kept-bytes");
    expect(b.toString()).toBe("bbbb");
  });
});

describe("TappedConnection over real sockets with shared reads", () => {
  it("relays both ways byte for byte while the client reads slowly (writes pending in the kernel), and still counts the joins", async () => {
    const clientFrames = frames(200, true, 1);
    const serverFrames = frames(300, false, 2);
    const appGot: Buffer[] = [];
    const clientGot: Buffer[] = [];
    const appPort = await listen((app) => {
      app.on("data", (d: Buffer) => appGot.push(d));
      let i = 0;
      const pump = (): void => {
        while (i < serverFrames.length) if (!app.write(serverFrames[i++]!)) return void app.once("drain", pump);
      };
      pump();
    });
    const ledger = new ChannelLedger(new TopicGroups([]));
    const channels = ledger.openSocket(KIND_WEBSOCKET);
    const observer = { onUnparsed: () => {}, onUninspected: () => {}, onConnectionClosed: () => {} };
    const proxyPort = await listen((client) => {
      const upstream = connect(appPort, "127.0.0.1");
      sockets.push(upstream);
      upstream.once("connect", () => new TappedConnection(client, upstream, channels, VSN_2, null, observer, 0).start());
    });
    const client = await dial(proxyPort);
    // A slow reader that keeps sending: 32 KiB read and 2 frames sent per step, so the sidecar's
    // writes to it back up in the kernel while the client's own reads keep going through the slab.
    client.pause();
    const wanted = serverFrames.reduce((n, f) => n + f.length, 0);
    let received = 0;
    let j = 0;
    await new Promise<void>((resolve) => {
      const step = (): void => {
        for (let k = 0; k < 2 && j < clientFrames.length; k++) client.write(clientFrames[j++]!);
        let chunk: Buffer | null;
        let n = 0;
        while (n < 32 * 1024 && (chunk = client.read() as Buffer | null) !== null) {
          clientGot.push(chunk);
          n += chunk.length;
        }
        received += n;
        if (received >= wanted && j === clientFrames.length) resolve();
        else setTimeout(step, 2);
      };
      step();
    });
    const sent = clientFrames.reduce((n, f) => n + f.length, 0);
    while (appGot.reduce((n, b) => n + b.length, 0) < sent) await new Promise((r) => setTimeout(r, 5));
    expect(sha(clientGot)).toBe(sha(serverFrames));
    expect(sha(appGot)).toBe(sha(clientFrames));
    expect(channels.pendingJoinCount).toBe(40); // every 5th of 200 frames is a join, none answered: the tap parsed them all
  }, 30_000);
});
