// Which pods each workload has, listed once a second (no watch: the soak restarts the API
// server, and a list that fails just keeps the last good answer). Clients, samplers and
// faults all read it.
import type { V1Pod } from "@kubernetes/client-node";
import type { SoakKube } from "./soak-kube.js";
import { sleepUnless } from "./soak-log.js";
import type { Workload } from "./workloads.js";

/** A pod as the soak needs it. */
export interface PodView {
  readonly name: string;
  readonly ip: string | undefined;
  readonly ready: boolean;
  readonly deleting: boolean;
  readonly pod: V1Pod;
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.phase === "Running" && (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

export class PodDirectory {
  private readonly pods = new Map<string, PodView[]>();
  /** Consecutive failed list rounds (an API server restart makes a few). */
  failedRounds = 0;

  constructor(private readonly k: SoakKube, private readonly workloads: readonly Workload[]) {}

  /** Every pod of the workload with an address, terminating ones included (they still hold sockets). */
  all(w: Workload): readonly PodView[] {
    return this.pods.get(w.namespace) ?? [];
  }

  /** Pods a Service would send new clients to: ready and not terminating. */
  ready(w: Workload): PodView[] {
    return this.all(w).filter((p) => p.ready && !p.deleting && p.ip);
  }

  /** Lists every workload's pods once. */
  async refresh(): Promise<void> {
    let failed = false;
    await Promise.all(this.workloads.map(async (w) => {
      try {
        const list = await this.k.core.listNamespacedPod({ namespace: w.namespace, labelSelector: `app=${w.name}` });
        this.pods.set(w.namespace, list.items.map((p) => ({
          name: p.metadata!.name!, ip: p.status?.podIP, ready: isPodReady(p), deleting: Boolean(p.metadata?.deletionTimestamp), pod: p,
        })));
      } catch {
        failed = true;
      }
    }));
    this.failedRounds = failed ? this.failedRounds + 1 : 0;
  }

  /** Refreshes every `intervalMs` until `signal` aborts. */
  async run(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.refresh();
      await sleepUnless(intervalMs, signal);
    }
  }
}
