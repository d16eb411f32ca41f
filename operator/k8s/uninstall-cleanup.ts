// What the operator leaves on other objects, taken back before it is uninstalled (the chart's
// pre-delete hook runs `--cleanup`): connmeter's finalizer on every ConnectionPolicy, which no
// one would remove once the operator is gone (a policy, and so its namespace, could then never
// be deleted), and the deletion-cost annotations it wrote on pods. Other tools' finalizers and
// annotations are never touched: the finalizer list is written back with the resourceVersion it
// was read at, and re-read on a conflict. Budgets pushed to sidecars need nothing: their TTL
// (140 s by default) returns every sidecar to its own flags.
//
// The operator still runs while a pre-delete hook does, and would add its finalizer back at the
// next reconcile. So the cleanup first takes the operator's leader Lease for itself (the leader
// sees another holder at its next renewal and exits; a standby cannot take it), then waits out
// renewDeadline: by then no replica holds a lease it renewed in time, and every write of the
// operator is refused by its own lease guard. Only then does it remove anything.
import type { KubeConfig } from "@kubernetes/client-node";
import { CLEANUP_FINALIZER, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION, GROUP, PLURAL, VERSION } from "../api/types.js";
import { patchPodAnnotations, patchPolicyFinalizers } from "./api-writes.js";
import { leaseApi, type Lease } from "./leader-election.js";
import { apiStatusCode, kubeRequest, microTime, seg } from "./request.js";

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
/** How long the cleanup holds the Lease, in s: past the uninstall, which deletes the Lease anyway. */
const HOLD_LEASE_SECONDS = 300;

/** Where the operator's leader Lease is, and how long its leader may go without renewing. */
export interface LeaseRef {
  namespace: string;
  name: string;
  renewDeadlineMs: number;
}

/**
 * Takes the operator's Lease (optimistically, retrying conflicts) and waits `renewDeadlineMs`
 * plus a margin, so no replica acts any more. An absent Lease (no leader election) needs nothing.
 */
export async function stopTheLeader(kc: KubeConfig, lease: LeaseRef, identity: string, log: (line: string) => void, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))): Promise<void> {
  const api = leaseApi(kc, lease.namespace, lease.name);
  for (let attempt = 1; ; attempt++) {
    const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    const current = await api.get(signal);
    if (!current) {
      log(`cleanup: no Lease ${lease.namespace}/${lease.name}: no leader to stop`);
      return;
    }
    const now = microTime(Date.now());
    const next: Lease = {
      ...current,
      spec: { holderIdentity: identity, leaseDurationSeconds: HOLD_LEASE_SECONDS, acquireTime: now, renewTime: now, leaseTransitions: (current.spec?.leaseTransitions ?? 0) + 1 },
    };
    try {
      await api.replace(next, signal);
      break;
    } catch (err) {
      if (apiStatusCode(err) !== 409 || attempt >= MAX_CONFLICTS) throw err;
    }
  }
  const waitMs = lease.renewDeadlineMs + 2_000;
  log(`cleanup: took Lease ${lease.namespace}/${lease.name} as ${identity}; waiting ${waitMs} ms for the operator's replicas to stop acting`);
  await sleep(waitMs);
}

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
export async function releaseEverything(kc: KubeConfig, namespace: string | undefined, lease: LeaseRef | undefined, log: (line: string) => void): Promise<CleanupResult> {
  if (lease) await stopTheLeader(kc, lease, `connmeter-cleanup_${process.pid}`, log);
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
