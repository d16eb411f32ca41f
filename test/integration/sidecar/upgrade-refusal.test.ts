import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startSidecar, type SidecarHandle } from "../../support/sidecar-harness.js";

/**
 * Answers an app gives an upgrade with too many headers before it resets the connection with
 * the rest of the request unread, as Bandit does: the 431 whole, with its body delimited by
 * the close, or cut short by the reset.
 */
const REFUSALS = {
  "a whole 431": "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 4\r\n\r\nnope",
  "a 431 whose body ends at the close": "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\r\nnope",
  "a 431 cut short by the reset": "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 40\r\n\r\nnope",
};

/**
 * An app that answers the first bytes of a request with `answer` and resets the connection a
 * moment later; `answer: null` resets without a byte (an app that crashes on the request).
 */
async function startResettingApp(answer: string | null): Promise<{ url: string; server: Server }> {
  const server = createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.once("data", () => {
      if (answer === null) socket.resetAndDestroy();
      else socket.write(answer, () => setTimeout(() => socket.resetAndDestroy(), 2));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Sends an upgrade with `headerCount` extra headers; resolves with every byte the sidecar sent until it closed. */
function upgradeWithHeaders(sidecarUrl: string, headerCount: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(sidecarUrl).port), "127.0.0.1");
    const chunks: Buffer[] = [];
    let head = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    head += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    for (let i = 0; i < headerCount; i++) head += `x-h${i}: v\r\n`;
    socket.write(`${head}\r\n`);
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", () => {});
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
  });
}

/** Every status line in what the client got, wherever it sits (a second response may follow a body). */
function statusLines(answer: string): string[] {
  return [...answer.matchAll(/HTTP\/1\.1 \d{3} [^\r]*/g)].map((m) => m[0]);
}

describe("an upgrade the app refuses and resets", () => {
  let front: SidecarHandle | undefined;
  let app: Server | undefined;

  afterEach(async () => {
    await front?.close();
    app?.close();
  });

  it.each(Object.entries(REFUSALS))("relays %s as the only response, and does not count the app as unavailable", async (_name, refusal) => {
    const started = await startResettingApp(refusal);
    app = started.server;
    front = await startSidecar({ upstream: started.url });
    // A 502 used to follow the 431 "often": try enough times to see a race.
    for (let i = 0; i < 20; i++) {
      const answer = await upgradeWithHeaders(front.url, 1000);
      expect(statusLines(answer)).toEqual(["HTTP/1.1 431 Request Header Fields Too Large"]);
    }
    const metrics = await (await fetch(`${front.adminUrl}/metrics`)).text();
    expect(metrics).toContain('connmeter_connections_rejected_total{reason="upstream_unavailable"} 0');
    expect((await front.stats()).connections).toBe(0);
  });

  it("answers 502 and counts upstream_unavailable when the app resets before a byte of answer", async () => {
    const started = await startResettingApp(null);
    app = started.server;
    front = await startSidecar({ upstream: started.url });
    for (let i = 0; i < 5; i++) {
      const answer = await upgradeWithHeaders(front.url, 10);
      expect(statusLines(answer)).toEqual(["HTTP/1.1 502 Bad Gateway"]);
    }
    const metrics = await (await fetch(`${front.adminUrl}/metrics`)).text();
    expect(metrics).toContain('connmeter_connections_rejected_total{reason="upstream_unavailable"} 5');
  });
});
