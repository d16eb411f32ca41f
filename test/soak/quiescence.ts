// Status exact at quiescence: once the faults have stopped and the soak has settled, each
// policy's status.connections and status.channels must equal the sums of its sidecars' own
// /stats. The sidecars are read before and after the policy, and the comparison counts only
// when both readings agree (the clients are frozen, so they do); the status may lag one
// scrape, so it is given two intervals to catch up.
import type { PodDirectory } from "./pod-directory.js";
import { readStats } from "./sidecar-sampler.js";
import { CONNPOL, retrying, type SoakKube } from "./soak-kube.js";
import { sleep } from "./soak-log.js";
import type { Workload } from "./workloads.js";

export interface StatusRecord {
  workload: string;
  sidecarConnections: number | undefined;
  sidecarChannels: number | undefined;
  statusConnections: number | undefined;
  statusChannels: number | undefined;
  /** Pods whose sidecar did not answer at the last reading. */
  unanswered: string[];
  exact: boolean;
  /** Seconds the check took (0 when the first reading matched). */
  waitedS: number;
}

async function sidecarSums(w: Workload, pods: PodDirectory): Promise<{ connections: number; channels: number; unanswered: string[] }> {
  await pods.refresh();
  let connections = 0;
  let channels = 0;
  const unanswered: string[] = [];
  await Promise.all(pods.all(w).map(async (p) => {
    const r = p.ip ? await readStats(p.ip, w.token) : { ok: false as const, reason: "no IP" };
    if (!r.ok) return unanswered.push(`${p.name} (${r.reason})`);
    connections += r.stats.connections;
    channels += r.stats.channels;
  }));
  return { connections, channels, unanswered };
}

async function policyStatus(k: SoakKube, w: Workload): Promise<{ connections?: number; channels?: number }> {
  const p = (await retrying(`read policy ${w.namespace}/${w.name}`, () => k.custom.getNamespacedCustomObject({ ...CONNPOL, namespace: w.namespace, name: w.name }))) as {
    status?: { connections?: number; channels?: number };
  };
  return p.status ?? {};
}

/** Compares one policy's status with its sidecars, retrying for up to `graceMs`. */
export async function checkStatusExact(k: SoakKube, w: Workload, pods: PodDirectory, graceMs: number): Promise<StatusRecord> {
  const t0 = Date.now();
  for (;;) {
    const before = await sidecarSums(w, pods);
    const status = await policyStatus(k, w);
    const after = await sidecarSums(w, pods);
    const stable = before.unanswered.length === 0 && after.unanswered.length === 0
      && before.connections === after.connections && before.channels === after.channels;
    const exact = stable && status.connections === after.connections && status.channels === after.channels;
    if (exact || Date.now() - t0 >= graceMs) {
      return {
        workload: `${w.namespace}/${w.name}`, sidecarConnections: after.connections, sidecarChannels: after.channels,
        statusConnections: status.connections, statusChannels: status.channels, unanswered: after.unanswered, exact,
        waitedS: Math.round((Date.now() - t0) / 100) / 10,
      };
    }
    await sleep(500);
  }
}
