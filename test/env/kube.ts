// client-node helpers shared by cluster-up, the node agent and the e2e helpers.
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  loadAllYaml,
  type KubernetesObject,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/** The HTTP status of a client-node error, or undefined for other errors. */
export function apiStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** The API server's message from a client-node error (its Status body), else the error text. */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    if (typeof body === "string") {
      try {
        return (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        return body;
      }
    }
    if (body && typeof body === "object" && "message" in body) return String((body as { message: unknown }).message);
  }
  return err instanceof Error ? err.message : String(err);
}

/** Creates each object, or replaces it if it exists (keeping its resourceVersion). */
export async function applyObjects(kc: KubeConfig, objects: readonly KubernetesObject[]): Promise<KubernetesObject[]> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const out: KubernetesObject[] = [];
  for (const obj of objects) {
    try {
      out.push(await client.create(obj));
    } catch (err) {
      if (apiStatus(err) !== 409) throw new Error(`creating ${obj.kind} ${obj.metadata?.name}: ${apiMessage(err)}`);
      const current = await client.read({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata?.name ?? "", namespace: obj.metadata?.namespace } } as KubernetesObject & { metadata: { name: string } });
      const next = { ...obj, metadata: { ...obj.metadata, resourceVersion: current.metadata?.resourceVersion } };
      out.push(await client.replace(next));
    }
  }
  return out;
}

/** Applies every CRD in `dir` (*.yaml) and waits until each is Established. Returns their names. */
export async function installCrds(kubeconfig: string, dir: string, timeoutMs = 30_000): Promise<string[]> {
  const kc = loadKubeConfig(kubeconfig);
  const docs = readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .flatMap((f) => loadAllYaml(readFileSync(join(dir, f), "utf8")) as KubernetesObject[])
    .filter((d) => d?.kind === "CustomResourceDefinition");
  await applyObjects(kc, docs);
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const names = docs.map((d) => d.metadata?.name ?? "");
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd: V1CustomResourceDefinition = await api.readCustomResourceDefinition({ name });
      const established = crd.status?.conditions?.find((c) => c.type === "Established")?.status === "True";
      if (established) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established after ${timeoutMs} ms: ${JSON.stringify(crd.status?.conditions)}`);
      await sleep(100);
    }
  }
  return names;
}

/**
 * Waits until the cluster can run pods: every node Ready and the default ServiceAccount made
 * by kube-controller-manager. `check` throws to abort (a component died).
 */
export async function waitForClusterServing(kubeconfig: string, nodes: readonly string[], timeoutMs: number, check: () => void): Promise<void> {
  const core = loadKubeConfig(kubeconfig).makeApiClient(CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  let missing = "nodes";
  while (Date.now() < deadline) {
    check();
    try {
      const list = await core.listNode();
      const ready = new Set(list.items.filter((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).map((n) => n.metadata?.name));
      const notReady = nodes.filter((n) => !ready.has(n));
      if (notReady.length) missing = `nodes ${notReady.join(", ")} Ready`;
      else {
        missing = "ServiceAccount default/default (kube-controller-manager)";
        await core.readNamespacedServiceAccount({ name: "default", namespace: "default" });
        return;
      }
    } catch (err) {
      if (apiStatus(err) !== 404) missing += ` (${apiMessage(err)})`;
    }
    await sleep(250);
  }
  throw new Error(`cluster not serving after ${timeoutMs} ms: still waiting for ${missing}`);
}
