// Wires the caches to the work queue and the reconciler: which changes enqueue which policies.
import { policyKey, type ConnectionPolicy } from "../api/types.js";
import type { OperatorMetrics } from "../admin/metrics.js";
import type { Caches, WorkloadLike } from "./cluster.js";
import type { Reconciler } from "./reconciler.js";
import { WorkQueue } from "./work-queue.js";

type Change<T> = (type: "add" | "update" | "delete", obj: T, old?: T) => void;

/** A cache the controller can subscribe to (operator/k8s's Informer). */
export interface Watchable<T> {
  onChange(handler: Change<T>): () => void;
}

export interface ControllerSources {
  policies: Watchable<ConnectionPolicy>;
  deployments: Watchable<WorkloadLike>;
  statefulSets: Watchable<WorkloadLike>;
}

export class PolicyController {
  readonly queue: WorkQueue;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly caches: Caches,
    private readonly reconciler: Reconciler,
    private readonly metrics: OperatorMetrics,
    private readonly log: (line: string) => void,
    concurrency: number,
  ) {
    this.queue = new WorkQueue({ concurrency });
  }

  /** Subscribes to changes and starts reconciling every known policy (call when leading). */
  start(sources: ControllerSources): void {
    this.unsubscribe.push(sources.policies.onChange((type, p) => {
      const key = policyKey(p.metadata.namespace, p.metadata.name);
      if (type === "delete") {
        this.queue.forget(key);
        void this.reconciler.forget(key, p);
      } else {
        this.queue.add(key);
      }
    }));
    // A target appearing, changing replicas or selector: its policies look again.
    const onTarget = (kind: string): Change<WorkloadLike> => (_type, w) => {
      const ns = w.metadata?.namespace;
      for (const p of this.caches.policies.list(ns)) {
        if (p.spec.targetRef.kind === kind && p.spec.targetRef.name === w.metadata?.name) this.queue.add(policyKey(p.metadata.namespace, p.metadata.name));
      }
    };
    this.unsubscribe.push(sources.deployments.onChange(onTarget("Deployment")), sources.statefulSets.onChange(onTarget("StatefulSet")));
    this.queue.start((key) => this.run(key));
    for (const p of this.caches.policies.list()) this.queue.add(policyKey(p.metadata.namespace, p.metadata.name));
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    await this.queue.stop();
  }

  private async run(key: string): Promise<{ requeueAfterMs: number }> {
    const end = this.metrics.reconcileDuration.startTimer();
    try {
      return await this.reconciler.reconcile(key);
    } catch (err) {
      this.metrics.reconcileErrors.inc();
      this.log(`reconcile ${key} failed (retried with backoff): ${(err as Error).message}`);
      throw err;
    } finally {
      end();
    }
  }
}
