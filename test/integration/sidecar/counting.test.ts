import type { Socket } from "phoenix";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { connected, join, leave, negotiatedExtensions, phoenixSocket } from "../../support/phoenix-client.js";
import { inBatches, startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";

const SOCKETS = 1000;
const TOPICS = ["room:a", "room:b", "room:c"];

/** The TCP socket under a phoenix Socket's `ws` connection, to kill it without a close frame. */
function tcpOf(socket: Socket): { destroy(): void } {
  const conn = (socket as unknown as { conn: { _socket: { destroy(): void } } }).conn;
  return conn._socket;
}

describe.each([
  { vsn: "2.0.0" as const, compress: false, path: "/socket" },
  { vsn: "2.0.0" as const, compress: true, path: "/socketz" },
  { vsn: "1.0.0" as const, compress: false, path: "/socket" },
  { vsn: "1.0.0" as const, compress: true, path: "/socketz" },
])("official phoenix client through the sidecar (vsn $vsn, compression $compress)", ({ vsn, compress, path }) => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle;

  beforeAll(async () => {
    app = await startPhoenixServer();
    sidecar = await startSidecar({ upstream: app.url });
  });
  afterAll(async () => {
    await sidecar?.close();
    await app?.close();
  });

  it(`counts ${SOCKETS} sockets × ${TOPICS.length} topics exactly after joins, after leaves and after abrupt TCP kills`, async () => {
    const sockets = await inBatches(Array.from({ length: SOCKETS }), 50, async () => {
      const s = phoenixSocket(sidecar.url, { vsn, compress, path });
      await connected(s);
      return s;
    });
    expect(negotiatedExtensions(sockets[0]!)?.includes("permessage-deflate") ?? false).toBe(compress);
    const channels = await inBatches(sockets, 50, async (s) => {
      const chans = TOPICS.map((t) => s.channel(t));
      const results = await Promise.all(chans.map(join));
      expect(results).toEqual(["ok", "ok", "ok"]);
      return chans;
    });
    const joined = await sidecar.stats();
    expect(joined).toMatchObject({ connections: SOCKETS, channels: SOCKETS * 3, topics: { "room:a": SOCKETS, "room:b": SOCKETS, "room:c": SOCKETS } });
    expect(joined.channels).toBe(app.count());
    expect(joined.unparsedMessages).toBe(0);

    await inBatches(channels, 50, (chans) => leave(chans[0]!));
    const afterLeave = await waitFor(sidecar.stats, (s) => s.channels === SOCKETS * 2, "channels after one leave per socket");
    expect(afterLeave.topics).toEqual({ "room:b": SOCKETS, "room:c": SOCKETS });
    await waitFor(() => app.count(), (n) => n === SOCKETS * 2, "the app's own count after leaves");

    // Half die without a close frame, half close cleanly: both must give back what they held.
    sockets.forEach((s, i) => (i % 2 === 0 ? tcpOf(s).destroy() : s.disconnect()));
    const end = await waitFor(sidecar.stats, (s) => s.connections === 0 && s.channels === 0, "all sockets gone");
    expect(end.topics).toEqual({});
    await waitFor(() => app.count(), (n) => n === 0, "the app's own count after kills");
    sockets.forEach((s) => s.disconnect());
  });
});
