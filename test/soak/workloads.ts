// The soak's scenario: three namespaces, each with the demo app + sidecar Deployment
// (test/env/manifests.ts), its admin token (sidecar env and Secret `connmeter-admin-token`)
// and a ConnectionPolicy with a cluster cap; two of them scale on connections, one only
// observes (so a manual `kubectl scale` of it sticks).
import { PatchStrategy, loadAllYaml, setHeaderOptions, type KubernetesObject } from "@kubernetes/client-node";
import { applyObjects } from "../env/kube.js";
import { meteredAppDeployment } from "../env/manifests.js";
import type { Rng } from "./rng.js";
import { CONNPOL, isNotFound, retrying, type SoakKube } from "./soak-kube.js";
import { sleep } from "./soak-log.js";

/** One metered workload of the scenario. */
export interface Workload {
  readonly namespace: string;
  /** Deployment, pod label `app`, and ConnectionPolicy name. */
  readonly name: string;
  readonly replicas: number;
  /** spec.limits.maxConnections: the cluster cap under test. */
  readonly maxConnections: number;
  readonly scaling?: { minReplicas: number; maxReplicas: number; targetConnectionsPerPod: number };
  /** Clients that try to hold a socket: more than the cap, so the cap is always pressed. */
  readonly clients: number;
  /** Bearer token of its sidecars' admin port (sent by the operator and the sampler). */
  readonly token: string;
}

/** Namespace of the operator replicas' Lease. */
export const SYSTEM_NAMESPACE = "soak-system";
export const LEASE_NAME = "connmeter-operator";
const NAMESPACE_LABEL = "connmeter.io/soak";

/**
 * The three workloads. `tokens` "shared" (the default): one token for all, the one the
 * operator replicas hold as CONNMETER_ADMIN_TOKEN, as today's operator sends its own token to
 * every sidecar; the Secrets carry it too. "per-namespace" (issue 14, 8): each namespace's
 * sidecars and Secret get a token of their own, and the operator's own token matches none,
 * so its pushes succeed only when it reads each pod's namespace Secret.
 */
export function soakWorkloads(operatorToken: string, tokens: "shared" | "per-namespace", rng: Rng): Workload[] {
  const token = () => (tokens === "shared" ? operatorToken : `soak-ns-${rng.word(24)}`);
  return [
    { namespace: "soak-a", name: "chat", replicas: 2, maxConnections: 10, clients: 15, token: token(),
      scaling: { minReplicas: 2, maxReplicas: 4, targetConnectionsPerPod: 4 } },
    { namespace: "soak-b", name: "chat", replicas: 2, maxConnections: 12, clients: 18, token: token() },
    { namespace: "soak-c", name: "chat", replicas: 1, maxConnections: 8, clients: 12, token: token(),
      scaling: { minReplicas: 1, maxReplicas: 3, targetConnectionsPerPod: 3 } },
  ];
}

export function policyYaml(w: Workload, intervalSeconds: number): string {
  const scaling = w.scaling
    ? `\n  scaling: {minReplicas: ${w.scaling.minReplicas}, maxReplicas: ${w.scaling.maxReplicas}, targetConnectionsPerPod: ${w.scaling.targetConnectionsPerPod}}`
    : "";
  return `
apiVersion: connmeter.io/v1alpha1
kind: ConnectionPolicy
metadata: {name: ${w.name}}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: ${w.name}}
  scrapeIntervalSeconds: ${intervalSeconds}
  topics: [{match: "room:lobby"}, {match: "room:*"}]
  limits: {maxConnections: ${w.maxConnections}}${scaling}
`;
}

function tokenSecretYaml(w: Workload): string {
  return `
apiVersion: v1
kind: Secret
metadata: {name: connmeter-admin-token}
stringData: {token: ${JSON.stringify(w.token)}}
`;
}

async function apply(k: SoakKube, namespace: string, yaml: string): Promise<void> {
  const docs = (loadAllYaml(yaml) as KubernetesObject[]).filter(Boolean).map((d) => ({ ...d, metadata: { ...d.metadata, namespace } }));
  await applyObjects(k.kc, docs);
}

/** Creates a namespace (labelled as the soak's) unless it exists, and waits for its default ServiceAccount. */
export async function ensureNamespace(k: SoakKube, name: string): Promise<void> {
  try {
    await k.core.createNamespace({ body: { metadata: { name, labels: { [NAMESPACE_LABEL]: "true" } } } });
  } catch (err) {
    if (!/409|AlreadyExists/i.test(String(err))) throw err;
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await k.core.readNamespacedServiceAccount({ name: "default", namespace: name });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`ServiceAccount ${name}/default never appeared`, { cause: err });
      await sleep(250);
    }
  }
}

/** Namespace, token Secret and Deployment of every workload (the policies come later). */
export async function deployWorkloads(k: SoakKube, workloads: readonly Workload[]): Promise<void> {
  for (const w of workloads) {
    await ensureNamespace(k, w.namespace);
    await apply(k, w.namespace, tokenSecretYaml(w));
    await apply(k, w.namespace, meteredAppDeployment({
      name: w.name, replicas: w.replicas,
      // As the chart's sidecar snippet will (issue 14, 5): a new pod admits nobody until its
      // first budget or 10 s. Set by env, which a sidecar without the setting ignores.
      // 30 s, as the chart's snippet and injection set it: a sidecar (re)started while the
      // leader is killed must wait out the failover (15 s lease + 2 intervals), not admit on its flags.
      sidecarEnv: { CONNMETER_ADMIN_TOKEN: w.token, CONNMETER_DRAIN_SECONDS: "2", CONNMETER_AWAIT_BUDGET_SECONDS: "30" },
    }));
  }
}

export async function applyPolicy(k: SoakKube, w: Workload, intervalSeconds: number): Promise<void> {
  await apply(k, w.namespace, policyYaml(w, intervalSeconds));
}

/** Waits until every workload's Deployment has its replicas ready (bounded). */
export async function waitForWorkloadsReady(k: SoakKube, workloads: readonly Workload[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const w of workloads) {
    for (;;) {
      const d = await retrying(`read Deployment ${w.namespace}/${w.name}`, () => k.apps.readNamespacedDeployment({ name: w.name, namespace: w.namespace }));
      const want = d.spec?.replicas ?? 0;
      const s = d.status ?? {};
      if ((s.readyReplicas ?? 0) === want && (s.replicas ?? 0) === want && (s.updatedReplicas ?? 0) === want) break;
      if (Date.now() > deadline) {
        throw new Error(`Deployment ${w.namespace}/${w.name}: ${s.readyReplicas ?? 0}/${want} ready after ${timeoutMs / 1000} s`);
      }
      await sleep(500);
    }
  }
}

/**
 * Deletes the soak's namespaces (labelled, so a previous run's leftovers go too) and waits,
 * bounded, until their pods are gone, so no container process outlives the soak; with
 * `untilGone`, until the namespaces themselves are gone (before they are made again).
 */
export async function deleteSoakNamespaces(k: SoakKube, timeoutMs: number, log: (line: string) => void, opts: { untilGone?: boolean } = {}): Promise<void> {
  const list = await retrying("list namespaces", () => k.core.listNamespace({ labelSelector: `${NAMESPACE_LABEL}=true` }));
  const names = list.items.map((n) => n.metadata!.name!);
  if (names.length === 0) return;
  for (const name of names) {
    // Churn policies may still carry the soak's finalizer if a run was interrupted.
    await releaseFinalizers(k, name);
    await k.core.deleteNamespace({ name }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    await k.core.deleteCollectionNamespacedPod({ namespace: name }).catch(() => undefined);
  }
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const pods = await k.core.listNamespacedPod({ namespace: name }).catch(() => ({ items: [] }));
      if (pods.items.length === 0) break;
      if (Date.now() > deadline) {
        log(`cleanup: namespace ${name} still has ${pods.items.length} pod(s) after ${timeoutMs / 1000} s; leaving them to the cluster`);
        break;
      }
      await sleep(500);
    }
  }
  if (!opts.untilGone) return;
  log(`setup: removing ${names.length} namespace(s) of an earlier soak: ${names.join(", ")}`);
  for (const name of names) {
    for (;;) {
      try {
        await k.core.readNamespace({ name });
      } catch (err) {
        if (isNotFound(err)) break;
      }
      if (Date.now() > deadline) throw new Error(`namespace ${name} of an earlier soak still terminating after ${timeoutMs / 1000} s`);
      await sleep(500);
    }
  }
}

/** Removes every finalizer from the namespace's ConnectionPolicies (a held policy blocks namespace deletion). */
export async function releaseFinalizers(k: SoakKube, namespace: string): Promise<void> {
  const list = (await k.custom.listNamespacedCustomObject({ ...CONNPOL, namespace }).catch(() => ({ items: [] }))) as {
    items: { metadata: { name: string; finalizers?: string[] } }[];
  };
  for (const p of list.items.filter((x) => x.metadata.finalizers?.length)) {
    await patchFinalizers(k, namespace, p.metadata.name, null).catch(() => undefined);
  }
}

/** Sets (or, with null, removes) a policy's finalizers with a JSON merge patch. */
export async function patchFinalizers(k: SoakKube, namespace: string, name: string, finalizers: string[] | null): Promise<void> {
  await k.custom.patchNamespacedCustomObject(
    { ...CONNPOL, namespace, name, body: { metadata: { finalizers } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}
