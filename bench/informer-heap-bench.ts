// `make bench`, operator memory: heap held per pod that no policy selects. 10,000 realistic
// pods (bench/realistic-pod.ts, ~15 KiB of JSON each with managedFields) go through the real
// Informer twice, once as operator/main.ts builds the pod informer (with trimPod) and once
// without a transform: the baseline, measured in the same run. The fake transport serves the
// list as JSON pages of 500 decoded with JSON.parse, then sends every pod again as a MODIFIED
// watch event decoded line by line, as the API server and client-node's Watch do, so whatever
// the decoded text could retain is retained here too.
//
// Heap per pod = (heapUsed after a full GC with the informer synced − heapUsed after a full GC
// before it started) / pods. Needs `node --expose-gc` (the Makefile passes it).
// Knobs (env): BENCH_HEAP_PODS (10000).
import { Informer, type InformerTransport, type KubernetesObject, type ListPage } from "../operator/k8s/informer.js";
import { trimPod } from "../operator/k8s/transforms.js";
import { realisticPod } from "./realistic-pod.js";

const PODS = Number(process.env.BENCH_HEAP_PODS ?? 10_000);
const PAGE = 500;
const NAMESPACES = 100;
/** Issue 14's target: at most 2 KiB of heap per pod no policy selects. */
const TARGET_BYTES = 2048;

const namespaceOf = (i: number) => `tenant-${i % NAMESPACES}`;

/** An API server that holds nothing itself: every page and event is rendered when asked for. */
class GeneratingServer implements InformerTransport {
  private emit: ((type: string, obj: unknown) => void) | undefined;
  jsonBytes = 0;

  async list(query: { continueToken?: string }): Promise<ListPage<KubernetesObject>> {
    const from = Number(query.continueToken ?? 0);
    const to = Math.min(PODS, from + PAGE);
    const items: string[] = [];
    for (let i = from; i < to; i++) items.push(JSON.stringify(realisticPod(i, namespaceOf(i), 1000 + i)));
    const text = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"${1000 + PODS}"${to < PODS ? `,"continue":"${to}"` : ""}},"items":[${items.join(",")}]}`;
    this.jsonBytes += text.length;
    const body = JSON.parse(text) as { items: KubernetesObject[]; metadata: { resourceVersion: string; continue?: string } };
    return { items: body.items, resourceVersion: body.metadata.resourceVersion, continueToken: body.metadata.continue };
  }

  async watch(_query: unknown, onEvent: (type: string, obj: unknown) => void): Promise<{ abort(): void }> {
    this.emit = onEvent;
    return { abort: () => { this.emit = undefined; } };
  }

  /** Sends every pod once more, as the kubelet's next status update would. */
  modifyAll(): void {
    for (let i = 0; i < PODS; i++) {
      const line = JSON.stringify({ type: "MODIFIED", object: realisticPod(i, namespaceOf(i), 1000 + PODS + 1 + i) });
      const event = JSON.parse(line) as { type: string; object: unknown };
      this.emit?.(event.type, event.object);
    }
  }
}

function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc (make bench does)");
  // Twice: the first pass may only queue finalizers that free more.
  gc();
  gc();
}

interface Result { bytesPerPod: number; jsonBytesPerPod: number; wallMs: number }

async function measure(transform: ((obj: unknown) => object) | undefined): Promise<Result> {
  fullGc();
  const before = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const server = new GeneratingServer();
  const informer = new Informer<KubernetesObject>({
    // The cast only bridges PodLike's `Date | string` timestamps and client-node's `Date`.
    kc: undefined as never, resource: "pods", path: "/api/v1/pods", transport: server, log: () => {}, transform: transform as ((o: KubernetesObject) => KubernetesObject) | undefined,
  });
  informer.start();
  await informer.waitForSync();
  await new Promise<void>((r) => setImmediate(r)); // the watch is requested after the sync
  server.modifyAll();
  const wallMs = performance.now() - t0;
  fullGc();
  const after = process.memoryUsage().heapUsed;
  // Read the cache after the measurement so that it is certainly live during it.
  const cached = informer.list().length;
  await informer.stop();
  if (cached !== PODS) throw new Error(`informer holds ${cached} pods, expected ${PODS}`);
  return { bytesPerPod: (after - before) / PODS, jsonBytesPerPod: server.jsonBytes / PODS, wallMs };
}

async function main(): Promise<void> {
  console.log(`[bench] informer heap: ${PODS} unrelated pods in ${NAMESPACES} namespaces, listed in pages of ${PAGE}, then each modified once by watch`);
  const trimmed = await measure(trimPod);
  const whole = await measure(undefined);
  const kib = (b: number) => `${(b / 1024).toFixed(2)} KiB`;
  const row = (name: string, value: string, note = "") => console.log(`| ${name.padEnd(44)} | ${value.padStart(16)} | ${note}`);
  console.log(`\n| operator: pod informer, ${PODS} unrelated pods ${"".padEnd(9)} | heap after GC    |`);
  console.log(`|${"-".repeat(46)}|${"-".repeat(18)}|`);
  row("pod JSON as served (list page share)", kib(trimmed.jsonBytesPerPod), "managedFields, 2 containers, statuses");
  row("heap per pod, trimPod (as main.ts builds it)", kib(trimmed.bytesPerPod), `target ≤ ${kib(TARGET_BYTES)}: ${trimmed.bytesPerPod <= TARGET_BYTES ? "met" : "NOT met"}`);
  row("baseline: heap per pod, whole objects", kib(whole.bytesPerPod), `(trimmed = 1/${(whole.bytesPerPod / trimmed.bytesPerPod).toFixed(1)} of it)`);
  row(`heap for ${PODS} pods, trimmed / whole`, `${(trimmed.bytesPerPod * PODS / 2 ** 20).toFixed(1)} / ${(whole.bytesPerPod * PODS / 2 ** 20).toFixed(1)} MiB`);
  row("wall time, list + watch, trimmed / whole", `${(trimmed.wallMs / 1000).toFixed(1)} / ${(whole.wallMs / 1000).toFixed(1)} s`, "includes rendering the JSON");
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
