// `make bench` (after the throughput benchmark): how long can one client or one scraper stall
// everybody else through the sidecar? The sidecar runs as its own process (the built
// dist/sidecar/main.js), the app and the probes here:
//   deflate bomb   one client sends one compressed message of ~1 MiB that inflates to 1 GiB
//   metrics storm  500 concurrent GET /metrics (from a child process)
//   bombs + dribblers  10 clients send such a bomb (BENCH_CROWD_BOMB_MIB, 256 MiB each) at the same
//                  moment while 1,000 sockets each send a join one byte per write (every 100 ms)
// and, for each, the worst echo round trip of a bystander socket through the sidecar and the
// worst GET /healthz. Prints a table; writes bench/results/stalls.json.
// The sidecar has a topic group with a budget, so the join gate holds what the dribblers send.
// Knobs (env): BENCH_BOMB_MIB (1024), BENCH_SCRAPES (500), BENCH_BOMBS (10), BENCH_DRIBBLERS (1000),
// BENCH_CROWD_BOMB_MIB (256), BENCH_PID_FILE (children's pids).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { killAllChildren, recordPidsIn, SIDECAR_NODE_FLAGS, startService } from "./bench-procs.js";
import { runBombsAndDribblers, runDeflateBomb, runMetricsStorm, startStallApp, type StallReport } from "../test/support/stall-probe.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RESULTS_DIR = join(REPO_ROOT, "bench", "results");
const BOMB_MIB = Number(process.env.BENCH_BOMB_MIB ?? 1024);
const SCRAPES = Number(process.env.BENCH_SCRAPES ?? 500);
const BOMBS = Number(process.env.BENCH_BOMBS ?? 10);
const DRIBBLERS = Number(process.env.BENCH_DRIBBLERS ?? 1000);
const CROWD_BOMB_MIB = Number(process.env.BENCH_CROWD_BOMB_MIB ?? 256);
/** Issue 15's goal for the crowd: other sockets' worst stall. */
const CROWD_GOAL_MS = 50;
/** A reference for the worst stall (what the stall tests bounded before they asserted progress instead). */
const BOUND_MS = 250;

interface Row extends StallReport {
  scenario: string;
  detail: string;
}

function rssLine(metrics: string): string {
  const m = /^connmeter_process_resident_memory_bytes (\S+)/m.exec(metrics);
  return m === null ? "n/a" : `${(Number(m[1]) / 2 ** 20).toFixed(0)} MiB`;
}

function table(rows: Row[]): string {
  const lines = [
    `Worst stall of others while one client misbehaves (reference bound ${BOUND_MS} ms; stalls.test.ts asserts progress, not a time)`,
    "scenario          worst echo ms  echo round trips  worst /healthz ms  detail",
  ];
  for (const r of rows) {
    lines.push(
      `${r.scenario.padEnd(17)} ${r.echoMaxMs.toFixed(0).padStart(13)}  ${String(r.echoRoundTrips).padStart(16)}  ${r.healthzMaxMs.toFixed(0).padStart(17)}  ${r.detail}`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  recordPidsIn(process.env.BENCH_PID_FILE);
  const app = await startStallApp();
  const ready = /listening on [\d.]+:(\d+) .* admin on [\d.]+:(\d+)/;
  const sidecar = await startService(
    "sidecar",
    process.execPath,
    [...SIDECAR_NODE_FLAGS, join(REPO_ROOT, "dist/sidecar/main.js"), "--listen=127.0.0.1:0", "--admin=127.0.0.1:0", `--upstream=${app.url}`, "--topic-group=room:*=1000000"],
    ready,
  );
  const url = `http://127.0.0.1:${sidecar.match![1]}`;
  const adminUrl = `http://127.0.0.1:${sidecar.match![2]}`;
  const rows: Row[] = [];
  try {
    console.log(`[stalls] ${cpus().length} cores, node ${process.version}: deflate bomb of ${BOMB_MIB} MiB…`);
    const bomb = await runDeflateBomb(url, adminUrl, app, BOMB_MIB * 1024 * 1024);
    rows.push({
      scenario: "deflate bomb",
      ...bomb,
      detail: `${(bomb.frameBytes / 2 ** 20).toFixed(2)} MiB on the wire → ${BOMB_MIB} MiB; relayed whole: ${bomb.relayedAll}; uninspected: ${bomb.uninspected}`,
    });
    console.log(`[stalls] ${SCRAPES} concurrent GET /metrics…`);
    const storm = await runMetricsStorm(url, adminUrl, SCRAPES);
    rows.push({ scenario: "metrics storm", ...storm, detail: `${SCRAPES} concurrent scrapes, ${storm.failedScrapes} failed` });
    console.log(`[stalls] ${BOMBS} simultaneous bombs of ${CROWD_BOMB_MIB} MiB + ${DRIBBLERS} sockets dribbling a join a byte per write…`);
    const crowd = await runBombsAndDribblers(url, adminUrl, app, { bombs: BOMBS, dribblers: DRIBBLERS, inflatedBytes: CROWD_BOMB_MIB * 2 ** 20, dribbleEveryMs: 100 });
    const held = await fetch(`${adminUrl}/metrics`).then((r) => r.text());
    rows.push({
      scenario: "bombs+dribblers",
      ...crowd,
      detail: `${BOMBS}×${CROWD_BOMB_MIB} MiB bombs (relayed whole: ${crowd.relayedAll}, uninspected: ${crowd.uninspected}), ${DRIBBLERS} dribblers wrote ${crowd.dribbledBytes} one-byte reads; goal ≤ ${CROWD_GOAL_MS} ms: ${crowd.echoMaxMs <= CROWD_GOAL_MS ? "MET" : "NOT MET"}; sidecar RSS after: ${rssLine(held)}`,
    });
  } finally {
    await sidecar.stop();
    await app.close();
  }
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, "stalls.json"), `${JSON.stringify({ at: new Date().toISOString(), node: process.version, boundMs: BOUND_MS, rows }, null, 2)}\n`);
  console.log(table(rows));
}

process.on("exit", killAllChildren);
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`stall bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
