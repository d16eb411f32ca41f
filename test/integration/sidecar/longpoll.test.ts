// Long-poll through the sidecar with the official client's LongPoll transport. This file loads
// the client through test/support's loader (which gives it an XMLHttpRequest), so it must not
// import "phoenix" directly.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPhoenixClient, type PhoenixChannel } from "../../support/phoenix-server/client/phoenix-js.js";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";

const WINDOW_MS = 1000;

function joined(channel: PhoenixChannel): Promise<string> {
  return new Promise((resolve) => {
    channel
      .join()
      .receive("ok", () => resolve("ok"))
      .receive("error", () => resolve("error"));
  });
}

describe("long-poll sessions through the sidecar", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle;

  beforeAll(async () => {
    // The app drops an idle session like Phoenix does; the sidecar's timeout is two windows.
    app = await startPhoenixServer({ longpollWindowMs: WINDOW_MS, longpollIdleTimeoutMs: 1.5 * WINDOW_MS });
    sidecar = await startSidecar({ upstream: app.url, longpollTimeoutSeconds: 2 });
  });
  afterAll(async () => {
    await sidecar?.close();
    await app?.close();
  });

  it("counts a session and its channels from the posted joins and polled replies, beside websockets", async () => {
    const { Socket, LongPoll } = await loadPhoenixClient();
    const socket = new Socket(`${sidecar.url.replace("http", "ws")}/socket`, {
      transport: LongPoll,
      heartbeatIntervalMs: 60_000,
      reconnectAfterMs: () => 3_600_000,
    });
    socket.connect();
    const room = socket.channel("room:lp");
    expect(await joined(room)).toBe("ok");
    expect(await joined(socket.channel("denied:x"))).toBe("error");
    expect(await sidecar.stats()).toMatchObject({ connections: 0, longpoll: 1, channels: 1, topics: { "room:lp": 1 } });

    room.leave();
    await waitFor(sidecar.stats, (s) => s.channels === 0, "the leave reply in a poll answer");
    expect(app.count()).toBe(0);

    expect(await joined(socket.channel("room:again"))).toBe("ok");
    await waitFor(sidecar.stats, (s) => s.channels === 1, "the second join");
    // Abandoned: the client stops polling without leaving; app and sidecar both drop it.
    socket.disconnect();
    await waitFor(() => app.count(), (n) => n === 0, "the app to drop the idle session", 10_000);
    const end = await waitFor(sidecar.stats, (s) => s.longpoll === 0, "the sidecar to end the idle session", 10_000);
    expect(end).toMatchObject({ channels: 0, topics: {} });
  });
});
