// Container environment and `$(VAR)` expansion, following the kubelet: envFrom first, then env
// in order (each value may refer to variables defined before it, or to the service variables),
// then command and args expanded against the final environment. `$$` escapes a `$`; an unknown
// `$(NAME)` stays as written.
import type { V1Container, V1EnvVar, V1Pod } from "@kubernetes/client-node";

/** Expands `$(NAME)` references in `input` the way Kubernetes does (third_party/forked/golang/expansion). */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== "$" || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const next = input[cursor + 1];
    let advance = 1;
    if (next === "$") out += "$";
    else if (next === "(") {
      const close = input.indexOf(")", cursor + 2);
      if (close === -1) out += "$(";
      else {
        const name = input.slice(cursor + 2, close);
        out += lookup(name) ?? `$(${name})`;
        advance = close - cursor;
      }
    } else out += `$${next}`;
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

/** What env resolution needs from outside the pod spec. */
export interface EnvSources {
  /** The pod's address (a function: it is allocated after the sources are made). */
  readonly podIP: () => string;
  readonly hostIP: string;
  /** Variables every container gets unless it defines them (KUBERNETES_SERVICE_HOST...). */
  readonly serviceEnv: Readonly<Record<string, string>>;
  readonly configMap: (namespace: string, name: string) => Promise<Record<string, string> | undefined>;
  readonly secret: (namespace: string, name: string) => Promise<Record<string, string> | undefined>;
  /** Node allocatable, for resourceFieldRef on a container without limits. */
  readonly nodeAllocatable: Readonly<Record<string, string>>;
}

/** A configuration error the kubelet reports as CreateContainerConfigError. */
export class ContainerConfigError extends Error {
  readonly reason = "CreateContainerConfigError";
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Resolves a container's environment; insertion order is definition order. */
export async function resolveEnv(pod: V1Pod, container: V1Container, src: EnvSources): Promise<Map<string, string>> {
  const ns = pod.metadata?.namespace ?? "default";
  const env = new Map<string, string>();
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref?.name) continue;
    const kind = from.configMapRef ? "configmap" : "secret";
    const data = from.configMapRef ? await src.configMap(ns, ref.name) : await src.secret(ns, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${kind} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) {
      const name = `${from.prefix ?? ""}${k}`;
      if (ENV_NAME.test(name)) env.set(name, v);
    }
  }
  const lookup = (name: string) => env.get(name) ?? src.serviceEnv[name];
  for (const v of container.env ?? []) {
    const value = v.valueFrom ? await valueFrom(pod, container, v, src) : expand(v.value ?? "", lookup);
    if (value !== undefined) env.set(v.name, value);
  }
  const result = new Map<string, string>();
  for (const [k, v] of Object.entries(src.serviceEnv)) if (!env.has(k)) result.set(k, v);
  for (const [k, v] of env) result.set(k, v);
  return result;
}

/** command + args with `$(VAR)` expanded against the container's final environment. */
export function expandCommand(parts: readonly string[], env: ReadonlyMap<string, string>): string[] {
  return parts.map((p) => expand(p, (name) => env.get(name)));
}

async function valueFrom(pod: V1Pod, container: V1Container, v: V1EnvVar, src: EnvSources): Promise<string | undefined> {
  const ns = pod.metadata?.namespace ?? "default";
  const from = v.valueFrom;
  if (from?.fieldRef) return fieldPath(pod, from.fieldRef.fieldPath, src);
  if (from?.resourceFieldRef) {
    return resourceField(container, from.resourceFieldRef.resource, String(from.resourceFieldRef.divisor ?? "1"), src);
  }
  const keyRef = from?.configMapKeyRef ?? from?.secretKeyRef;
  if (keyRef) {
    const kind = from?.configMapKeyRef ? "configmap" : "secret";
    const data = from?.configMapKeyRef ? await src.configMap(ns, keyRef.name ?? "") : await src.secret(ns, keyRef.name ?? "");
    const value = data?.[keyRef.key];
    if (value === undefined) {
      if (keyRef.optional) return undefined;
      throw new ContainerConfigError(data ? `couldn't find key ${keyRef.key} in ${kind} ${ns}/${keyRef.name}` : `${kind} "${keyRef.name}" not found`);
    }
    return value;
  }
  throw new ContainerConfigError(`env ${v.name}: unsupported valueFrom ${JSON.stringify(from)}`);
}

/** The downward API's fieldRef paths. */
export function fieldPath(pod: V1Pod, path: string, src: Pick<EnvSources, "podIP" | "hostIP">): string {
  const meta = pod.metadata ?? {};
  const mapKey = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (mapKey) return (mapKey[1] === "labels" ? meta.labels : meta.annotations)?.[mapKey[2] ?? ""] ?? "";
  switch (path) {
    case "metadata.name": return meta.name ?? "";
    case "metadata.namespace": return meta.namespace ?? "";
    case "metadata.uid": return meta.uid ?? "";
    case "metadata.labels": return formatMap(meta.labels);
    case "metadata.annotations": return formatMap(meta.annotations);
    case "spec.nodeName": return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName": return pod.spec?.serviceAccountName ?? "";
    case "status.podIP": case "status.podIPs": return src.podIP();
    case "status.hostIP": case "status.hostIPs": return src.hostIP;
    default: throw new ContainerConfigError(`unsupported fieldRef.fieldPath "${path}"`);
  }
}

function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {}).sort().map((k) => `${k}="${m?.[k] ?? ""}"`).join("\n");
}

const SUFFIX: Record<string, number> = {
  "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** Parses a resource quantity ("500m", "64Mi", "1.5") into a number of base units. */
export function parseQuantity(q: string): number {
  const m = /^([+-]?[0-9.]+)(?:[eE]([+-]?\d+))?([a-zA-Z]*)$/.exec(q.trim());
  const factor = m ? SUFFIX[m[3] ?? ""] : undefined;
  if (!m || factor === undefined) throw new ContainerConfigError(`invalid quantity "${q}"`);
  return Number(m[1]) * 10 ** Number(m[2] ?? 0) * factor;
}

function resourceField(container: V1Container, resource: string, divisor: string, src: EnvSources): string {
  const [kind, name = ""] = resource.split(".");
  const res = container.resources;
  const set = kind === "limits" ? res?.limits : res?.requests;
  // Like the kubelet: a missing limit is the node's allocatable; a missing request is 0 (cpu/memory).
  const raw = set?.[name] ?? (kind === "limits" ? src.nodeAllocatable[name] : "0");
  if (raw === undefined) throw new ContainerConfigError(`unsupported resourceFieldRef "${resource}"`);
  return String(Math.ceil(parseQuantity(String(raw)) / parseQuantity(divisor)));
}
