// Kubeconfig files for the local cluster: client certificates, the CA, one context.
import { readFileSync, writeFileSync } from "node:fs";

export interface KubeconfigInput {
  readonly server: string;
  readonly caFile: string;
  readonly user: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly token?: string;
  readonly namespace?: string;
  /** Embed the files' contents (a kubeconfig that still works if copied elsewhere). */
  readonly embed?: boolean;
}

const CONTEXT = "connmeter";

function b64(path: string): string {
  return readFileSync(path).toString("base64");
}

/** Renders a kubeconfig (JSON is valid YAML, and kubectl and client-node both read it). */
export function renderKubeconfig(k: KubeconfigInput): string {
  const cluster = k.embed
    ? { server: k.server, "certificate-authority-data": b64(k.caFile) }
    : { server: k.server, "certificate-authority": k.caFile };
  const user: Record<string, string> = {};
  if (k.certFile && k.keyFile) {
    if (k.embed) {
      user["client-certificate-data"] = b64(k.certFile);
      user["client-key-data"] = b64(k.keyFile);
    } else {
      user["client-certificate"] = k.certFile;
      user["client-key"] = k.keyFile;
    }
  }
  if (k.token) user.token = k.token;
  const context: Record<string, string> = { cluster: CONTEXT, user: k.user };
  if (k.namespace) context.namespace = k.namespace;
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: CONTEXT, cluster }],
    users: [{ name: k.user, user }],
    contexts: [{ name: CONTEXT, context }],
    "current-context": CONTEXT,
    preferences: {},
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

export function writeKubeconfig(path: string, k: KubeconfigInput): void {
  writeFileSync(path, renderKubeconfig(k), { mode: 0o600 });
}
