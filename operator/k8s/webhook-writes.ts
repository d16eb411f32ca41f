// The injection webhook's reads and writes (issue 16): its TLS Secret (one name, in the
// operator's namespace), the caBundle of its MutatingWebhookConfiguration (one name), and the
// operator's label on namespaces that hold a policy. Each one is a single named object, so
// RBAC grants them by resourceNames (the namespaces' label is narrowed by the chart's
// ValidatingAdmissionPolicy to that one label).
import type { KubeConfig } from "@kubernetes/client-node";
import { TLS_KEYS, type TlsData } from "../webhook/certs.js";
import type { CaBundleTarget, TlsSecretStore } from "../webhook/tls-keeper.js";
import { JSON_PATCH, MERGE_PATCH, apiStatusCode, kubeRequest, seg } from "./request.js";

const REQUEST_TIMEOUT_MS = 10_000;
const signal = () => AbortSignal.timeout(REQUEST_TIMEOUT_MS);

/** The TLS Secret `namespace/name`: read with its resourceVersion, written with it as a precondition. */
export function tlsSecretStore(kc: KubeConfig, namespace: string, name: string): TlsSecretStore {
  const path = `/api/v1/namespaces/${seg(namespace)}/secrets/${seg(name)}`;
  return {
    async read() {
      try {
        const s = await kubeRequest<{ metadata?: { resourceVersion?: string }; data?: Record<string, string> }>(kc, { method: "GET", path, signal: signal() });
        const data: TlsData = {};
        for (const [field, key] of Object.entries(TLS_KEYS) as [keyof TlsData, string][]) {
          const b64 = s.data?.[key];
          if (b64) data[field] = Buffer.from(b64, "base64").toString("utf8");
        }
        return { data, resourceVersion: s.metadata?.resourceVersion ?? "" };
      } catch (err) {
        if (apiStatusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async write(data, resourceVersion) {
      const encoded: Record<string, string> = {};
      for (const [field, key] of Object.entries(TLS_KEYS) as [keyof TlsData, string][]) {
        const v = data[field];
        if (v !== undefined) encoded[key] = Buffer.from(v, "utf8").toString("base64");
      }
      await kubeRequest(kc, { method: "PATCH", path, body: { metadata: { resourceVersion }, data: encoded }, contentType: MERGE_PATCH, signal: signal() });
    },
  };
}

interface WebhookConfiguration {
  webhooks?: { name: string; clientConfig?: { caBundle?: string } }[];
}

/** The caBundle of every webhook in the MutatingWebhookConfiguration `name`. */
export function caBundleTarget(kc: KubeConfig, name: string): CaBundleTarget {
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${seg(name)}`;
  const get = () => kubeRequest<WebhookConfiguration>(kc, { method: "GET", path, signal: signal() });
  return {
    async read() {
      const bundles = new Set((await get()).webhooks?.map((w) => w.clientConfig?.caBundle ?? "") ?? []);
      const [only] = [...bundles];
      return bundles.size === 1 && only ? Buffer.from(only, "base64").toString("utf8") : undefined;
    },
    async write(bundle) {
      const webhooks = (await get()).webhooks ?? [];
      const b64 = Buffer.from(bundle, "utf8").toString("base64");
      // JSON Patch by index, each guarded by a test of the webhook's name: a list edited since the read fails the patch instead of misplacing a bundle.
      const ops = webhooks.flatMap((w, i) => [
        { op: "test", path: `/webhooks/${i}/name`, value: w.name },
        { op: "add", path: `/webhooks/${i}/clientConfig/caBundle`, value: b64 },
      ]);
      if (ops.length > 0) await kubeRequest(kc, { method: "PATCH", path, body: ops, contentType: JSON_PATCH, signal: signal() });
    },
  };
}

/** Sets (a string) or removes (null) labels of a namespace, leaving the others. */
export async function patchNamespaceLabels(kc: KubeConfig, namespace: string, labels: Record<string, string | null>): Promise<void> {
  await kubeRequest(kc, { method: "PATCH", path: `/api/v1/namespaces/${seg(namespace)}`, body: { metadata: { labels } }, contentType: MERGE_PATCH, signal: signal() });
}
