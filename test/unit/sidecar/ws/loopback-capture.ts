// Records the genuine bytes of a ws client/server conversation (including permessage-deflate as ws
// really negotiates and compresses it) through a tiny TCP relay on 127.0.0.1.
import { once } from "node:events";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer, type PerMessageDeflateOptions } from "ws";

/** One message of the scripted conversation. */
export interface Step {
  from: "client" | "server";
  data: Buffer;
  binary: boolean;
  /** Ask ws to compress it (default true). */
  compress?: boolean;
  /** Send it in this many fragments (default 1), with a ping between fragments. */
  fragments?: number;
}

/** Both byte streams as relayed, each starting with its HTTP upgrade head. */
export interface Capture {
  c2s: Buffer;
  s2c: Buffer;
  /** Sec-WebSocket-Extensions of the 101 response. */
  extensions: string | undefined;
}

/** The index just past the HTTP head (`\r\n\r\n`) at the start of a captured direction. */
export function endOfHttpHead(bytes: Buffer): number {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) throw new Error("no HTTP head in capture");
  return end + 4;
}

async function listen(server: net.Server | WebSocketServer): Promise<number> {
  if (server instanceof WebSocketServer) {
    if (server.address() === null) await once(server, "listening");
    return (server.address() as AddressInfo).port;
  }
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

function startRelay(upstreamPort: number, c2s: Buffer[], s2c: Buffer[]): net.Server {
  return net.createServer((client) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    client.on("data", (chunk: Buffer) => {
      c2s.push(Buffer.from(chunk));
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      s2c.push(Buffer.from(chunk));
      client.write(chunk);
    });
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
}

async function sendStep(sender: WebSocket, receiver: WebSocket, step: Step): Promise<void> {
  const received = once(receiver, "message");
  const fragments = Math.max(1, step.fragments ?? 1);
  const size = Math.ceil(step.data.length / fragments);
  for (let i = 0; i < fragments; i++) {
    const part = step.data.subarray(i * size, (i + 1) * size);
    sender.send(part, { binary: step.binary, compress: step.compress ?? true, fin: i === fragments - 1 });
    if (i < fragments - 1) sender.ping("between fragments");
  }
  const [data] = (await received) as [Buffer];
  if (!Buffer.from(data).equals(step.data)) throw new Error("relay corrupted a message");
}

/**
 * Runs `steps` between a ws client and server (each waits for its message to arrive), then a close
 * handshake (client 1000 "bye"); returns the relayed bytes of both directions.
 */
export async function captureConversation(
  server: PerMessageDeflateOptions | false,
  client: PerMessageDeflateOptions | false,
  steps: readonly Step[],
): Promise<Capture> {
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: server });
  const relay = startRelay(await listen(wss), c2s, s2c);
  const relayPort = await listen(relay);
  try {
    const accepted = once(wss, "connection");
    const ws = new WebSocket(`ws://127.0.0.1:${relayPort}/socket/websocket?vsn=2.0.0`, { perMessageDeflate: client });
    let extensions: string | undefined;
    ws.on("upgrade", (res) => (extensions = res.headers["sec-websocket-extensions"]));
    const [peer] = (await accepted) as [WebSocket];
    if (ws.readyState !== WebSocket.OPEN) await once(ws, "open");
    for (const step of steps) {
      await (step.from === "client" ? sendStep(ws, peer, step) : sendStep(peer, ws, step));
    }
    const closed = Promise.all([once(ws, "close"), once(peer, "close")]);
    ws.close(1000, "bye");
    await closed;
    return { c2s: Buffer.concat(c2s), s2c: Buffer.concat(s2c), extensions };
  } finally {
    relay.close();
    wss.close();
  }
}
