// Helpers for e2e tests against the local cluster, in the style of KEDA's e2e helpers:
// a namespace per test (deleted afterwards), waits with a deadline that fail with what they
// last saw, and a summary of the namespace's pods and events in every timeout message.
import {
  AppsV1Api, CoreV1Api, CustomObjectsApi, loadAllYaml,
  type KubeConfig, type KubernetesObject, type V1Deployment, type V1Pod,
} from "@kubernetes/client-node";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, inject, onTestFinished } from "vitest";
import { findRepoRoot } from "./config.js";
import { CHART_DIR, helm, kubectlWith } from "./helm.js";
import { apiMessage, apiStatus, applyObjects, loadKubeConfig } from "./kube.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Clients for the local cluster (the kubeconfig comes from the e2e globalSetup). */
export interface Kube {
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
}

let cached: Kube | undefined;

export function kube(): Kube {
  if (!cached) {
    const kc = loadKubeConfig(inject("kubeconfig"));
    cached = { kc, core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
  }
  return cached;
}

/** Fails fast with the fix when the build output a pod image runs is missing. */
export function requireBuilt(...scripts: string[]): void {
  const root = findRepoRoot();
  const missing = scripts.filter((s) => !existsSync(join(root, s)));
  if (missing.length) throw new Error(`${missing.join(", ")} not built: run \`make build\` before the e2e tests`);
}

/**
 * Polls `fn` until it returns a value other than undefined/false, or throws after `timeoutMs`
 * with `what`, the last value or error, and `explain()` (e.g. the namespace's pods).
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  opts: { intervalMs?: number; explain?: () => Promise<string> } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      last = `last result: ${String(v)}`;
    } catch (err) {
      last = `last error: ${apiMessage(err)}`;
    }
    if (Date.now() >= deadline) {
      const detail = opts.explain ? `\n${await opts.explain().catch((e: unknown) => String(e))}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})${detail}`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/**
 * Creates a namespace (`<prefix>-<random>`) and waits for its default ServiceAccount (pods are
 * refused before it exists). Inside a test it is deleted when the test ends; the cleanup waits
 * until its pods (and so their processes) are gone, so the next test does not share the CPU
 * with them. The namespace itself finishes terminating in the background.
 */
export async function createNamespace(prefix = "e2e", opts: { deleteAfterTest?: boolean } = {}): Promise<string> {
  const { core } = kube();
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  await core.createNamespace({ body: { metadata: { name, labels: { "connmeter.io/e2e": "true" } } } });
  if (opts.deleteAfterTest ?? true) onTestFinished(() => deleteNamespace(name));
  await waitFor(`ServiceAccount ${name}/default`, () => core.readNamespacedServiceAccount({ name: "default", namespace: name }), 30_000);
  return name;
}

/** Deletes a namespace and waits (up to `timeoutMs`) until no pod is left in it. */
export async function deleteNamespace(name: string, timeoutMs = 60_000): Promise<void> {
  const { core } = kube();
  try {
    await core.deleteNamespace({ name });
  } catch (err) {
    if (apiStatus(err) === 404) return;
    throw err;
  }
  // The namespace controller gets to the pods only after a round of discovery (seconds);
  // a terminating namespace admits no new pods, so deleting them now is safe and quick.
  await core.deleteCollectionNamespacedPod({ namespace: name }).catch(() => undefined);
  await waitFor(`the pods of namespace ${name} to be deleted`, async () => {
    const pods = await core.listNamespacedPod({ namespace: name });
    return pods.items.length === 0;
  }, timeoutMs, { intervalMs: 250, explain: () => describeNamespace(name) });
}

/** Applies YAML (one or more documents) into `namespace`. */
export async function applyYaml(namespace: string, yaml: string): Promise<KubernetesObject[]> {
  const docs = (loadAllYaml(yaml) as KubernetesObject[]).filter(Boolean).map((d) => ({ ...d, metadata: { ...d.metadata, namespace } }));
  return applyObjects(kube().kc, docs);
}

/** Pods matching `labelSelector` that are not being deleted. */
export async function listPods(namespace: string, labelSelector: string): Promise<V1Pod[]> {
  const list = await kube().core.listNamespacedPod({ namespace, labelSelector });
  return list.items.filter((p) => !p.metadata?.deletionTimestamp);
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.phase === "Running" && (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** One line per pod (phase, readiness, node, IP, container states) and the latest events. */
export async function describeNamespace(namespace: string): Promise<string> {
  const { core } = kube();
  const pods = await core.listNamespacedPod({ namespace });
  const lines = pods.items.map((p) => {
    const cs = (p.status?.containerStatuses ?? []).map((c) => {
      const state = c.state?.running ? "running" : c.state?.waiting ? `waiting(${c.state.waiting.reason}: ${c.state.waiting.message ?? ""})` : `terminated(${c.state?.terminated?.exitCode})`;
      return `${c.name}=${state}${c.ready ? "/ready" : ""} restarts=${c.restartCount}`;
    }).join(" ");
    return `  pod ${p.metadata?.name} ${p.status?.phase} ready=${isPodReady(p)} node=${p.spec?.nodeName ?? "-"} ip=${p.status?.podIP ?? "-"} ${cs}${p.metadata?.deletionTimestamp ? " (deleting)" : ""}`;
  });
  const events = await core.listNamespacedEvent({ namespace });
  const recent = events.items.slice(-12).map((e) => `  event ${e.type} ${e.involvedObject.kind}/${e.involvedObject.name} ${e.reason}: ${e.message}`);
  return [`namespace ${namespace}:`, ...lines, ...recent].join("\n");
}

/** Waits until `n` pods matching `labelSelector` are Running and Ready; returns them. */
export async function waitForPodsReady(namespace: string, labelSelector: string, n: number, timeoutMs: number): Promise<V1Pod[]> {
  return waitFor(`${n} Ready pod(s) ${labelSelector} in ${namespace}`, async () => {
    const pods = await listPods(namespace, labelSelector);
    return pods.length === n && pods.every(isPodReady) ? pods : undefined;
  }, timeoutMs, { explain: () => describeNamespace(namespace) });
}

/** Waits until Deployment `name` has exactly `n` replicas, all updated and ready (KEDA's WaitForDeploymentReplicaReadyCount). */
export async function waitForReplicas(namespace: string, name: string, n: number, timeoutMs: number): Promise<V1Deployment> {
  const { apps } = kube();
  return waitFor(`Deployment ${namespace}/${name} to have ${n} ready replica(s)`, async () => {
    const d = await apps.readNamespacedDeployment({ name, namespace });
    const s = d.status ?? {};
    const settled = (s.replicas ?? 0) === n && (s.readyReplicas ?? 0) === n && (s.updatedReplicas ?? 0) === n
      && (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
    return settled ? d : undefined;
  }, timeoutMs, { explain: () => describeNamespace(namespace) });
}

/** Waits until the pod is gone from the API. */
export async function waitForPodGone(namespace: string, name: string, timeoutMs: number): Promise<void> {
  const { core } = kube();
  await waitFor(`pod ${namespace}/${name} to be deleted`, async () => {
    try {
      await core.readNamespacedPod({ name, namespace });
      return false;
    } catch (err) {
      if (apiStatus(err) === 404) return true;
      throw err;
    }
  }, timeoutMs, { explain: () => describeNamespace(namespace) });
}

/** One Helm release of the chart shared by the tests of a file (they run in order); see {@link useHelmRelease}. */
export interface HelmRelease {
  /** The release name: unique per run, with "connmeter" in it, so objects are named <release>-operator, ... */
  readonly name: string;
  /** The release namespace ("" until {@link HelmRelease.install}). */
  readonly namespace: string;
  /** The app namespace made beside it, the only one its operator watches ("" until install). */
  readonly appNamespace: string;
  /** helm with the e2e cluster's kubeconfig. */
  helm(args: string[], timeoutMs?: number): string;
  /** `helm install --wait` into two new namespaces; resolves with the 2 operator pods once Ready. */
  install(sets?: string[]): Promise<V1Pod[]>;
  /** `helm uninstall --wait` (afterAll then has nothing to uninstall). */
  uninstall(timeoutSeconds?: number): void;
  /** Runs before the uninstall in afterAll: close clients while the pods still run. */
  onCleanup(fn: () => void | Promise<void>): void;
}

/**
 * The chart installed as an e2e file uses it: release and app namespaces (`<prefix>-rel-…`,
 * `<prefix>-app-…`), images tagged :dev, the operator watching the app namespace only (other
 * runs' policies are not its business), the app namespace's admin token made by the chart.
 * Registers an afterAll that runs the cleanups, uninstalls the release unless a test did, and
 * deletes both namespaces. Call it at the top level of the test file.
 */
export function useHelmRelease(prefix: string): HelmRelease {
  const name = `connmeter-${Math.random().toString(36).slice(2, 7)}`;
  const cleanups: (() => void | Promise<void>)[] = [];
  let installed = false;
  const release = {
    name, namespace: "", appNamespace: "",
    helm: (args: string[], timeoutMs = 240_000) => helm(args, { env: { KUBECONFIG: inject("kubeconfig") }, timeoutMs }),
    async install(sets: string[] = []): Promise<V1Pod[]> {
      release.namespace = await createNamespace(`${prefix}-rel`, { deleteAfterTest: false });
      release.appNamespace = await createNamespace(`${prefix}-app`, { deleteAfterTest: false });
      const app = release.appNamespace;
      installed = true;
      release.helm(["install", name, CHART_DIR, "--namespace", release.namespace, "--wait", "--timeout", "180s",
        "--set", `adminToken.extraNamespaces={${app}},image.tag=dev,injection.sidecar.image.tag=dev,injection.redirect.image.tag=dev,operator.extraArgs={--namespace=${app}}`,
        ...sets.flatMap((s) => ["--set", s])]);
      return waitForPodsReady(release.namespace, `app.kubernetes.io/instance=${name}`, 2, 90_000);
    },
    uninstall(timeoutSeconds = 120): void {
      installed = false;
      release.helm(["uninstall", name, "--namespace", release.namespace, "--wait", "--timeout", `${timeoutSeconds}s`]);
    },
    onCleanup: (fn: () => void | Promise<void>) => void cleanups.push(fn),
  };
  afterAll(async () => {
    for (const fn of cleanups) await fn();
    if (installed) {
      try {
        release.uninstall();
      } catch (err) {
        console.warn(`helm uninstall ${name}: ${(err as Error).message.slice(0, 500)}`);
      }
    }
    await Promise.all([release.namespace, release.appNamespace].filter(Boolean).map((ns) => deleteNamespace(ns)));
  });
  return release;
}

/** kubectl with the e2e cluster's kubeconfig; throws with stderr on failure. */
export const kubectl = (...args: string[]): string => kubectlWith(inject("kubeconfig"), args);

// The pod-process helpers live in pod-processes.ts (no vitest there, so test/soak can use them).
export { containerPids, freezeContainer, killContainer, processExists } from "./pod-processes.js";
