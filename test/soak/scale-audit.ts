// Were scale writes applied twice? Every write to a Deployment's replicas bumps its
// metadata.generation (the soak never changes a pod template), so generation(end) −
// generation(start) counts every scale applied. The soak's own `kubectl scale` calls are known
// by the generation each returned; the rest were the operator's. Each operator replica logs
// every scale it wrote ("policy ns/name: scaled Deployment chat 2 -> 3 (...)"), and records
// a ScaledUp/ScaledDown Event. A write that changed nothing (the replicas were already there:
// a second leader, a stale cache) shows as a logged write without a generation bump; a bump
// nobody logged is a write no replica owns up to. Both should be 0.
import type { Replica } from "./operator-fleet.js";
import { retrying, type SoakKube } from "./soak-kube.js";
import type { Workload } from "./workloads.js";

export interface ScaleRecord {
  workload: string;
  generationStart: number;
  generationEnd: number;
  /** Generation bumps by the soak's `kubectl scale`. */
  manualScales: number;
  /** Generation bumps that were not the soak's: scales the operator applied. */
  operatorApplied: number;
  /** Scale writes the operator replicas logged. */
  operatorWrites: number;
  /** ScaledUp + ScaledDown Events (series counts summed). */
  events: number;
  /** Logged writes that changed nothing: max(0, writes − applied). */
  appliedTwice: number;
  /** Applied scales no replica logged: max(0, applied − writes). */
  unexplained: number;
}

const SCALE_LINE = /connmeter-operator policy ([^/\s]+)\/(\S+): scaled (\w+) (\S+) (\d+) -> (\d+)/g;

export class ScaleAudit {
  private readonly start = new Map<string, number>();
  private readonly manual = new Map<string, number>();

  constructor(private readonly k: SoakKube, private readonly workloads: readonly Workload[]) {}

  private async generation(w: Workload): Promise<number> {
    const d = await retrying(`read Deployment ${w.namespace}/${w.name}`, () => this.k.apps.readNamespacedDeployment({ name: w.name, namespace: w.namespace }));
    return d.metadata?.generation ?? 0;
  }

  async begin(): Promise<void> {
    for (const w of this.workloads) this.start.set(w.namespace, await this.generation(w));
  }

  /** A `kubectl scale` of the soak bumped the generation (call only when it did). */
  recordManualScale(w: Workload): void {
    this.manual.set(w.namespace, (this.manual.get(w.namespace) ?? 0) + 1);
  }

  /**
   * The records per workload, and connmeter_operator_scale_actions_total summed over every
   * replica's last scrape (it has no policy label: a fleet-wide cross-check of the logs).
   */
  async finish(replicas: readonly Replica[]): Promise<{ rows: ScaleRecord[]; metricTotal: number }> {
    const logs = replicas.map((r) => r.handle.logs()).join("\n");
    const metricTotal = replicas.reduce((n, r) => n + r.scaleActions, 0);
    const out: ScaleRecord[] = [];
    for (const w of this.workloads) {
      const generationEnd = await this.generation(w);
      const generationStart = this.start.get(w.namespace) ?? generationEnd;
      const manualScales = this.manual.get(w.namespace) ?? 0;
      const operatorApplied = generationEnd - generationStart - manualScales;
      const operatorWrites = [...logs.matchAll(SCALE_LINE)].filter((m) => m[1] === w.namespace && m[4] === w.name).length;
      out.push({
        workload: `${w.namespace}/${w.name}`, generationStart, generationEnd, manualScales, operatorApplied, operatorWrites,
        events: await this.scaleEvents(w),
        appliedTwice: Math.max(0, operatorWrites - operatorApplied), unexplained: Math.max(0, operatorApplied - operatorWrites),
      });
    }
    return { rows: out, metricTotal };
  }

  private async scaleEvents(w: Workload): Promise<number> {
    const list = await retrying(`list Events in ${w.namespace}`, () => this.k.events.listNamespacedEvent({ namespace: w.namespace }));
    return list.items
      .filter((e) => e.regarding?.kind === "ConnectionPolicy" && e.regarding.name === w.name && (e.reason === "ScaledUp" || e.reason === "ScaledDown"))
      .reduce((n, e) => n + (e.series?.count ?? 1), 0);
  }
}
