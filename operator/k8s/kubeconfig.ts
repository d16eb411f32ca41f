// Where the operator's credentials come from, in the order an operator expects: an explicit
// --kubeconfig wins (a developer pointing at a cluster on purpose), then the pod's
// ServiceAccount (the normal in-cluster run), then $KUBECONFIG / ~/.kube/config.
import { KubeConfig } from "@kubernetes/client-node";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

/** The files a pod's ServiceAccount mount provides (the paths client-node reads). */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface LoadKubeConfigOptions {
  /** Explicit kubeconfig path (--kubeconfig / CONNMETER_KUBECONFIG). */
  kubeconfig?: string;
  /** For tests: the environment, a root prefixed to the ServiceAccount paths, and $HOME. */
  env?: NodeJS.ProcessEnv;
  fsRoot?: string;
  home?: string;
}

/**
 * Loads the KubeConfig the operator talks to the API server with. Throws an Error naming the
 * fix when none is found, rather than letting client-node fall back to http://localhost:8080.
 */
export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  const kc = new KubeConfig();
  if (opts.kubeconfig) {
    if (!existsSync(opts.kubeconfig)) throw new Error(`--kubeconfig ${opts.kubeconfig}: no such file`);
    kc.loadFromFile(opts.kubeconfig);
    return requireCluster(kc, `--kubeconfig ${opts.kubeconfig}`);
  }
  const fsRoot = opts.fsRoot ?? "";
  const saDir = fsRoot + SERVICE_ACCOUNT_DIR;
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(saDir, "token"))) {
    // client-node's loadFromCluster reads the token through a tokenFile provider on every
    // request, so the kubelet's token rotation (about hourly) needs no restart.
    kc.loadFromCluster(fsRoot);
    return requireCluster(kc, "the in-cluster ServiceAccount");
  }
  const candidates = (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  const home = opts.home ?? homedir();
  const defaultPath = join(home, ".kube", "config");
  const found = candidates.filter((p) => existsSync(p));
  if (found.length === 0 && !existsSync(defaultPath)) {
    const looked = [
      "--kubeconfig (not given)",
      `in-cluster ServiceAccount (${env.KUBERNETES_SERVICE_HOST ? `no token in ${saDir}` : "KUBERNETES_SERVICE_HOST not set"})`,
      `$KUBECONFIG (${candidates.length ? `${candidates.join(delimiter)}: not found` : "not set"})`,
      `${defaultPath} (not found)`,
    ];
    throw new Error(
      `no Kubernetes credentials found; looked at: ${looked.join("; ")}. ` +
        "Pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a ServiceAccount token mounted",
    );
  }
  if (found.length) {
    // Merge like kubectl: the first file's current-context wins.
    kc.loadFromFile(found[0]!);
    for (const p of found.slice(1)) mergeMissing(kc, p);
    return requireCluster(kc, `$KUBECONFIG (${found.join(delimiter)})`);
  }
  kc.loadFromFile(defaultPath);
  return requireCluster(kc, defaultPath);
}

/** Adds the clusters, users and contexts of `file` whose names `kc` lacks (kubectl: first wins). */
function mergeMissing(kc: KubeConfig, file: string): void {
  const more = new KubeConfig();
  more.loadFromFile(file);
  for (const c of more.getClusters()) if (!kc.getCluster(c.name)) kc.addCluster(c);
  for (const u of more.getUsers()) if (!kc.getUser(u.name)) kc.addUser(u);
  for (const x of more.getContexts()) if (!kc.getContextObject(x.name)) kc.addContext(x);
}

function requireCluster(kc: KubeConfig, source: string): KubeConfig {
  if (!kc.getCurrentCluster()) {
    throw new Error(`${source}: no current cluster (current-context "${kc.getCurrentContext()}" names no cluster); set current-context`);
  }
  return kc;
}
