// `make cluster-up` / `make cluster-down` / `make cluster-status`:
//   node dist/test/env/cluster-main.js up|down|status
import { clusterDown, clusterUp, describeState } from "./cluster.js";

const log = (line: string) => console.error(line);

async function main(command: string | undefined): Promise<void> {
  switch (command) {
    case "up": {
      const res = await clusterUp(log);
      console.log(res.kubeconfig);
      return;
    }
    case "down": {
      const t0 = Date.now();
      const { stopped } = await clusterDown(log);
      if (stopped.length) log(`cluster: stopped ${stopped.join(", ")} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return;
    }
    case "status":
      console.log(describeState());
      return;
    default:
      throw new Error(`usage: cluster-main.js up|down|status (got ${command ?? "nothing"})`);
  }
}

main(process.argv[2]).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
