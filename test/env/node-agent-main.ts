// The node agent process started by cluster-up: `node dist/test/env/node-agent-main.js
// --kubeconfig <file>`. Nodes, addresses and ports come from the same settings as cluster-up
// (test/env/config.ts). SIGTERM/SIGINT stop every container it runs before it exits.
import { loadClusterConfig } from "./config.js";
import { loadKubeConfig } from "./kube.js";
import { NodeAgent } from "./node-agent/agent.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);

async function main(): Promise<void> {
  const kubeconfig = arg("--kubeconfig") ?? process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error("node-agent: --kubeconfig <file> is required");
  const config = loadClusterConfig();
  const agent = new NodeAgent(loadKubeConfig(kubeconfig), config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`node-agent: ${signal}: stopping containers`);
    agent.stop(5_000).then(
      () => { log("node-agent: stopped"); process.exit(0); },
      (err: unknown) => { log(`node-agent: stop failed: ${String(err)}`); process.exit(1); },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  await agent.start();
  log(`node-agent: running ${config.nodeCount} node(s), pods on ${config.podNetPrefix}.<node>.0/24`);
}

main().catch((err: unknown) => {
  log(`node-agent: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
