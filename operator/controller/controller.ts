// Wires the caches to the work queue and the reconciler: which changes enqueue which policies,
// and how a failed reconcile is retried. A deleted policy's key is forgotten by the queue; a
// write the API server refuses for good (400, 403, 422) is retried at the policy's interval,
// never hot, and every other failure backs off no further than that interval, so the
// per-interval scrape and budget push go on whatever write fails.
import { policyKey, withDefaults, type ConnectionPolicy } from "../api/types.js";
import type { OperatorMetrics } from "../admin/metrics.js";
import { isTerminalWriteError, type Caches, type WorkloadLike } from "./cluster.js";
import type { ReconcileResult, Reconciler } from "./reconciler.js";
import { TerminalError, WorkQueue, type WorkQueueOptions } from "./work-queue.js";

/** The controller's name in the work-queue metrics (`name` label), as controller-runtime names its controllers. */
export const CONTROLLER_NAME = "connectionpolicy";

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
    /** Overrides for tests (timers, clock). */
    queueOptions: Partial<WorkQueueOptions> = {},
  ) {
    this.queue = new WorkQueue({
      concurrency, maxBackoffMs: (key) => this.intervalMs(key), metrics: metrics.workQueue(CONTROLLER_NAME), ...queueOptions,
    });
  }

  /** Terminal messages logged per key, so a write refused every interval is logged once, not every interval. */
  private readonly terminalLogged = new Map<string, string>();

  /** Subscribes to changes and starts reconciling every known policy (call when leading). */
  start(sources: ControllerSources): void {
    this.unsubscribe.push(sources.policies.onChange((type, p) => {
      const key = policyKey(p.metadata.namespace, p.metadata.name);
      if (type === "delete") {
        this.queue.forget(key);
        this.terminalLogged.delete(key);
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

  private async run(key: string): Promise<ReconcileResult> {
    const end = this.metrics.reconcileDuration.startTimer();
    try {
      const result = await this.reconciler.reconcile(key);
      this.terminalLogged.delete(key);
      return result;
    } catch (err) {
      this.metrics.reconcileErrors.inc();
      const message = (err as Error).message;
      if (isTerminalWriteError(err)) {
        const intervalMs = this.intervalMs(key);
        if (this.terminalLogged.get(key) !== message) {
          this.log(`reconcile ${key} failed: the API server refused a write (${message}); a retry cannot fix it, so it is retried every interval (${intervalMs} ms), not sooner: fix the policy or the operator's RBAC`);
          this.terminalLogged.set(key, message);
        }
        throw new TerminalError(message, intervalMs, { cause: err });
      }
      this.log(`reconcile ${key} failed (retried with backoff, at most every ${this.intervalMs(key)} ms): ${message}`);
      throw err;
    } finally {
      end();
    }
  }

  /** The policy's scrape interval in ms (5 s when it is not in the cache): the longest a failed key waits. */
  private intervalMs(key: string): number {
    const slash = key.indexOf("/");
    const policy = this.caches.policies.get(key.slice(0, slash), key.slice(slash + 1));
    return policy ? withDefaults(policy.spec).scrapeIntervalSeconds * 1000 : 5000;
  }
}
