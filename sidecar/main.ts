#!/usr/bin/env node
// connmeter sidecar: wires config, the proxy, the admin port and signals. Logic lives elsewhere.
// First: exits with a clear message under a Node older than 24 (before any dependency loads).
import "./require-node.js";
import { AdminServer } from "./admin/admin-server.js";
import { createMetrics } from "./admin/metrics.js";
import { ConfigError, loadConfig, usage } from "./config.js";
import { Sidecar } from "./sidecar.js";

async function main(): Promise<void> {
  const config = loadConfig(process.argv.slice(2), process.env);
  if (config === "help") {
    console.log(usage());
    return;
  }
  const sidecar = new Sidecar({
    listen: config.listen,
    upstream: config.upstream,
    limits: config.limits,
    topics: config.topics,
    maxTopicLabels: config.maxTopicLabels,
    longpollTimeoutSeconds: config.longpollTimeoutSeconds,
    maxHandshakes: config.maxHandshakes,
    handshakeTimeoutSeconds: config.handshakeTimeoutSeconds,
    awaitBudgetSeconds: config.awaitBudgetSeconds,
    tap: config.tap,
    inflateBytesPerTurn: config.inflateBytesPerTurn,
    maxInflatedMessageBytes: config.maxInflatedMessageBytes,
  });
  const admin = new AdminServer(sidecar, createMetrics(sidecar), config.adminToken);
  const publicAt = await sidecar.start();
  const adminAt = await admin.start(config.admin);
  log(`listening on ${publicAt.host}:${publicAt.port} → ${config.upstream}; admin on ${adminAt.host}:${adminAt.port}`);
  if (!config.tap) log("--tap off: WebSocket bytes are relayed unparsed; nothing is counted or refused (a benchmark's bare relay)");
  if (config.awaitBudgetSeconds > 0) log(`await-budget: refusing new upgrades until the operator's first PUT /config or ${config.awaitBudgetSeconds}s`);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining (readiness off, no new upgrades, ${config.drainSeconds}s for open sockets)`);
    const how = await sidecar.drain(config.drainSeconds * 1000);
    log(`drain ended ${how === "graceful" ? "gracefully: every socket left" : "by force: remaining sockets got close 1001"}`);
    await sidecar.close();
    await admin.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

function log(msg: string): void {
  console.log(`${new Date().toISOString()} connmeter-sidecar ${msg}`);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`connmeter-sidecar: ${err.message}`);
    process.exit(2);
  }
  console.error("connmeter-sidecar: fatal:", err);
  process.exit(1);
});
