// What the operator leaves on other objects, taken back before it is uninstalled (the chart's
// pre-delete hook runs `--cleanup`): connmeter's finalizer on every ConnectionPolicy, which no
// one would remove once the operator is gone (a policy, and so its namespace, could then never
// be deleted), and the deletion-cost annotations it wrote on pods. Other tools' finalizers and
// annotations are never touched: the finalizer list is written back with the resourceVersion it
// was read at, and re-read on a conflict. Budgets pushed to sidecars need nothing: their TTL
// (25 s by default) returns every sidecar to its own flags.
import type { KubeConfig } from "@kubernetes/client-node";
import { CLEANUP_FINALIZER, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION, GROUP, PLURAL, VERSION } from "../api/types.js";
import { patchPodAnnotations, patchPolicyFinalizers } from "./api-writes.js";
import { apiStatusCode, kubeRequest, seg } from "./request.js";

interface Meta {
  name: string;
  namespace: string;
  resourceVersion?: string;
  finalizers?: string[];
  annotations?: Record<string, string>;
}

/** Bound of each request, in ms: the hook has a deadline of its own too. */
const REQUEST_TIMEOUT_MS = 20_000;
/** Tries per policy when other writers keep changing it (409). */
const MAX_CONFLICTS = 5;

export interface CleanupResult {
  /** Policies whose finalizer was removed. */
  released: string[];
  /** Pods whose deletion cost was removed. */
  pods: number;
  /** What could not be done, one line each. */
  failures: string[];
}

async function list(kc: KubeConfig, path: string): Promise<Meta[]> {
  const out = await kubeRequest<{ items?: { metadata: Meta }[] }>(kc, { method: "GET", path, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return (out.items ?? []).map((i) => i.metadata);
}

/**
 * Removes connmeter's finalizer from every ConnectionPolicy (of `namespace`, or all), and the
 * deletion costs it wrote on the pods of their namespaces. Never throws for one object: each
 * failure is reported and the rest goes on.
 */
export async function releaseEverything(kc: KubeConfig, namespace: string | undefined, log: (line: string) => void): Promise<CleanupResult> {
  const result: CleanupResult = { released: [], pods: 0, failures: [] };
  const scope = namespace ? `/namespaces/${seg(namespace)}` : "";
  const policies = await list(kc, `/apis/${GROUP}/${VERSION}${scope}/${PLURAL}`);
  const namespaces = new Set(policies.map((p) => p.namespace));
  for (const ns of namespaces) {
    for (const pod of await list(kc, `/api/v1/namespaces/${seg(ns)}/pods`)) {
      if (pod.annotations?.[DELETION_COST_OWNER_ANNOTATION] === undefined) continue;
      try {
        await patchPodAnnotations(kc, ns, pod.name, { [DELETION_COST_ANNOTATION]: null, [DELETION_COST_OWNER_ANNOTATION]: null });
        result.pods++;
      } catch (err) {
        if (apiStatusCode(err) !== 404) result.failures.push(`pod ${ns}/${pod.name}: deletion cost not removed: ${(err as Error).message}`);
      }
    }
  }
  for (const p of policies) {
    const key = `${p.namespace}/${p.name}`;
    let meta: Meta | undefined = p;
    for (let attempt = 1; meta?.finalizers?.includes(CLEANUP_FINALIZER); attempt++) {
      try {
        await patchPolicyFinalizers(kc, meta.namespace, meta.name, meta.finalizers.filter((f) => f !== CLEANUP_FINALIZER), meta.resourceVersion ?? "");
        result.released.push(key);
        break;
      } catch (err) {
        const status = apiStatusCode(err);
        if (status === 404) break;
        if (status !== 409 || attempt >= MAX_CONFLICTS) {
          result.failures.push(`policy ${key}: finalizer ${CLEANUP_FINALIZER} not removed: ${(err as Error).message}. `
            + `Remove it by hand: kubectl -n ${p.namespace} patch connpol ${p.name} --type=json -p '[{"op":"remove","path":"/metadata/finalizers/${meta.finalizers.indexOf(CLEANUP_FINALIZER)}"}]'`);
          break;
        }
        meta = (await list(kc, `/apis/${GROUP}/${VERSION}/namespaces/${seg(p.namespace)}/${PLURAL}`)).find((x) => x.name === p.name);
      }
    }
  }
  log(`cleanup: removed ${CLEANUP_FINALIZER} from ${result.released.length} of ${policies.length} ConnectionPolicies and the deletion costs of ${result.pods} pods`
    + (result.failures.length ? `; ${result.failures.length} failed:\n  ${result.failures.join("\n  ")}` : ""));
  return result;
}
