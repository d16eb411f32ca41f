// The local demo (`make demo`): the Phoenix test app, the real sidecar binary in front of it,
// and the official phoenix client opening sockets and joining topics, with the sidecar's
// /stats printed after each step. Runs on loopback and stops by itself within seconds.
import { startPhoenixServer } from "./phoenix-server/index.js";
import { connected, join, leave, phoenixSocket } from "./phoenix-client.js";
import { inBatches, waitFor } from "./wait.js";
import { startSidecarProcess } from "./sidecar-process.js";

const SOCKETS = 120;
const MAX_CONNECTIONS = 100;

async function main(): Promise<void> {
  const app = await startPhoenixServer({ host: "127.0.0.1", port: 0 });
  const { child: sidecar, port, adminPort } = await startSidecarProcess(
    [`--upstream=${app.url}`, `--max-connections=${MAX_CONNECTIONS}`, "--reject-at-percent=80", "--topic-group=room:*", "--drain-seconds=2"],
    "inherit",
  );
  const sidecarUrl = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  step(`Phoenix test app on ${app.url}; the sidecar on ${sidecarUrl} (admin ${adminUrl}), --max-connections ${MAX_CONNECTIONS}`);
  const stats = async () => (await (await fetch(`${adminUrl}/stats`)).json()) as Record<string, unknown>;

  step(`${SOCKETS} official phoenix clients connect (${SOCKETS - MAX_CONNECTIONS} over the cap are refused with 503)`);
  const attempts = await inBatches(Array.from({ length: SOCKETS }), 20, async () => {
    const s = phoenixSocket(sidecarUrl);
    try {
      await connected(s);
      return s;
    } catch {
      s.disconnect();
      return null;
    }
  });
  const sockets = attempts.filter((s) => s !== null);
  console.log(`  connected: ${sockets.length}, refused: ${SOCKETS - sockets.length}`);
  await show(stats, adminUrl);

  step("each socket joins room:<n % 10> and patterns:lobby; every tenth also tries denied:x (the app refuses it)");
  const channels = await inBatches(sockets, 20, async (s, i) => {
    const room = s.channel(`room:${i % 10}`);
    const lobby = s.channel("patterns:lobby");
    await Promise.all([join(room), join(lobby)]);
    if (i % 10 === 0) {
      const denied = s.channel("denied:x");
      await join(denied);
      denied.leave();
    }
    return { room, lobby };
  });
  await show(stats, adminUrl);

  step("half the sockets leave the lobby");
  const before = (await stats()).channels as number;
  const leaving = channels.slice(0, channels.length / 2);
  await inBatches(leaving, 20, (c) => leave(c.lobby));
  // The JS client reports a leave at once; the sidecar counts it when the app's reply passes.
  await waitFor(stats, (s) => s.channels === before - leaving.length, "the leave replies");
  await show(stats, adminUrl);

  step("a quarter of the sockets die without a close frame (TCP destroyed)");
  sockets.slice(0, sockets.length / 4).forEach((s) => (s as unknown as { conn: { _socket: { destroy(): void } } }).conn._socket.destroy());
  await new Promise((r) => setTimeout(r, 300));
  await show(stats, adminUrl);

  step("SIGTERM: the sidecar drains (readiness off, close 1001 after --drain-seconds)");
  sidecar.kill("SIGTERM");
  await new Promise((r) => sidecar.once("exit", r));
  sockets.forEach((s) => s.disconnect());
  console.log(`  the app's own count after the drain: ${app.count()} channels`);
  await app.close();
}

async function show(stats: () => Promise<Record<string, unknown>>, adminUrl: string): Promise<void> {
  console.log(`  /stats   ${JSON.stringify(await stats())}`);
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  const wanted = /^connmeter_(connections\{|channels\{|connections_rejected_total\{reason="capacity"|channel_joins_total|ready )/;
  for (const line of metrics.split("\n").filter((l) => wanted.test(l))) console.log(`  metrics  ${line}`);
}

function step(msg: string): void {
  console.log(`\n== ${msg}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error("demo failed:", err);
    process.exit(1);
  },
);
