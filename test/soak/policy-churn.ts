// Policy churn: create/delete cycles of extra ConnectionPolicies spread over the fault phase,
// names of 63 characters, on a real workload (the older policy acts, these only meter) or,
// at random, on a Deployment that does not exist. Every n-th one is held by another tool's
// finalizer (as Argo CD and others add) while it is deleted, and released a few seconds later.
import type { Rng } from "./rng.js";
import { CONNPOL, isNotFound, retrying, type SoakKube } from "./soak-kube.js";
import { errText, sleep, sleepUnless } from "./soak-log.js";
import { patchFinalizers, type Workload } from "./workloads.js";

export const FOREIGN_FINALIZER = "soak.connmeter.io/held-by-another-tool";
/**
 * Length of the churn policies' names: 63, the longest a label value may be (names end up in
 * labels, Lease and Event names); the CRD itself does not limit metadata.name below 253.
 */
export const NAME_LENGTH = 63;
const CYCLE_TIMEOUT_MS = 30_000;

export interface ChurnCounts {
  planned: number;
  done: number;
  withFinalizer: number;
  failed: number;
  /** Slowest cycle, seconds (create to gone). */
  slowestS: number;
}

export interface ChurnOptions {
  cycles: number;
  finalizerEvery: number;
  /** Cycles are spread over this long. */
  spreadMs: number;
  intervalSeconds: number;
}

/** A 63-character policy name for cycle `i`. */
export function churnName(i: number, rng: Rng): string {
  const head = `churn-${String(i).padStart(3, "0")}-`;
  return head + rng.word(NAME_LENGTH - head.length);
}

export class PolicyChurn {
  readonly counts: ChurnCounts;

  constructor(
    private readonly k: SoakKube,
    private readonly workloads: readonly Workload[],
    private readonly rng: Rng,
    private readonly opts: ChurnOptions,
    private readonly log: (line: string) => void,
  ) {
    this.counts = { planned: opts.cycles, done: 0, withFinalizer: 0, failed: 0, slowestS: 0 };
  }

  /** Runs the cycles one after another, each starting at its slot in the spread; stops early on `signal`. */
  async run(signal: AbortSignal): Promise<void> {
    const t0 = Date.now();
    const gapMs = this.opts.cycles > 0 ? this.opts.spreadMs / this.opts.cycles : 0;
    for (let i = 0; i < this.opts.cycles && !signal.aborted; i++) {
      await sleepUnless(Math.max(0, t0 + i * gapMs - Date.now()), signal);
      if (signal.aborted) break;
      const held = (i + 1) % this.opts.finalizerEvery === 0;
      const started = Date.now();
      try {
        await this.cycle(i, held);
        this.counts.done++;
        if (held) this.counts.withFinalizer++;
      } catch (err) {
        this.counts.failed++;
        this.log(`churn: cycle ${i + 1} failed: ${errText(err)}`);
      }
      this.counts.slowestS = Math.max(this.counts.slowestS, (Date.now() - started) / 1000);
      if ((i + 1) % 10 === 0) this.log(`churn: ${i + 1}/${this.opts.cycles} policy create/delete cycles (${this.counts.withFinalizer} held by a finalizer, ${this.counts.failed} failed)`);
    }
  }

  private async cycle(i: number, held: boolean): Promise<void> {
    const w = this.workloads[i % this.workloads.length]!;
    const name = churnName(i, this.rng);
    const namespace = w.namespace;
    const target = this.rng.next() < 0.5 ? w.name : "no-such-deployment";
    const body = {
      apiVersion: `${CONNPOL.group}/${CONNPOL.version}`, kind: "ConnectionPolicy", metadata: { name, namespace },
      spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: target }, scrapeIntervalSeconds: this.opts.intervalSeconds },
    };
    await retrying(`create policy ${namespace}/${name}`, () => this.k.custom.createNamespacedCustomObject({ ...CONNPOL, namespace, body }));
    if (held) await retrying(`add a finalizer to ${name}`, () => patchFinalizers(this.k, namespace, name, [FOREIGN_FINALIZER]));
    // Long enough for the operator to take it up (it reconciles a new policy at once) or to be mid-reconcile.
    await sleep(this.rng.int(200, 2500));
    await retrying(`delete policy ${namespace}/${name}`, () => this.k.custom.deleteNamespacedCustomObject({ ...CONNPOL, namespace, name }));
    if (held) {
      const heldMs = this.rng.int(2000, 4000);
      await sleep(heldMs);
      await retrying(`remove the finalizer of ${name}`, () => patchFinalizers(this.k, namespace, name, null));
      this.log(`churn: cycle ${i + 1} held ${namespace}/${name.slice(0, 16)}… (target ${target}) by a finalizer for ${(heldMs / 1000).toFixed(1)} s after its deletion, then released it`);
    }
    await this.waitGone(namespace, name);
  }

  private async waitGone(namespace: string, name: string): Promise<void> {
    const deadline = Date.now() + CYCLE_TIMEOUT_MS;
    for (;;) {
      try {
        await this.k.custom.getNamespacedCustomObject({ ...CONNPOL, namespace, name });
      } catch (err) {
        if (isNotFound(err)) return;
      }
      if (Date.now() > deadline) throw new Error(`policy ${namespace}/${name} still there ${CYCLE_TIMEOUT_MS / 1000} s after its deletion`);
      await sleep(250);
    }
  }
}
