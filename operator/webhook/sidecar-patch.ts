// The injection itself, as a pure function: a pod and the settings in, RFC 6902 operations out.
// The webhook answers with these operations; it never sends a rebuilt pod (a rebuilt pod
// loses fields this code does not know, such as an init container's `restartPolicy`).
//
// Traffic takeover without privileges (named-port mode, the default), as Telepresence's
// agent injector does: the app container's port named e.g. `http` becomes `cm-http`, the
// sidecar gets a port named `http`, so a Service with `targetPort: http` (and its
// EndpointSlices, and Ingresses through it) reaches the sidecar with no edit; the sidecar
// forwards to the app's containerPort on 127.0.0.1. The app container's probes and lifecycle
// hooks that named the port are renamed with it, so the kubelet still probes the app itself.
import {
  INJECTED_ANNOTATION, INJECT_LABEL, INJECT_MODE_LABEL, INJECT_PORT_ANNOTATION, SIDECAR_ADMIN_PORT_NAME, SIDECAR_CONTAINER,
  type InjectionMode,
} from "../api/types.js";
import { pointerToken, type Container, type JsonPatchOp, type Pod, type Probe } from "./pod-spec.js";
import { buildRedirect } from "./redirect-patch.js";

export interface ResourceRequirements {
  requests: Record<string, string>;
  limits: Record<string, string>;
}

/** What the sidecar looks like: the chart's values, overridden per policy. */
export interface InjectionSettings {
  image: string;
  imagePullPolicy?: string;
  /** The sidecar's public port (4001): never the app's. */
  listenPort: number;
  /** The sidecar's admin port (spec.sidecar.adminPort, 9090). */
  adminPort: number;
  /** Always carries requests and limits: quotas refuse pods whose containers lack them. */
  resources: ResourceRequirements;
  /** The app port to take over, by name, when the pod does not name one (`connmeter.io/inject-port`). */
  portName: string;
  mode: InjectionMode;
  /** `--drain-seconds`; undefined: the sidecar's default. */
  drainSeconds?: number;
  /** `--await-budget-seconds`; 0 or undefined: off. */
  awaitBudgetSeconds?: number;
  /** Topic group globs (`--topic-group`), from spec.topics. */
  topicGroups: string[];
  /** Secret in the pod's namespace whose key `token` is the admin token (optional: the pod starts without it). */
  adminTokenSecret: string;
  /** The app's port when the pod names none to take over (the sidecar's default upstream). */
  defaultUpstreamPort: number;
  /** Redirect mode (iptables): the init container's image (needs sh and iptables); undefined: redirect mode refused. */
  redirectInitImage?: string;
  /** Redirect mode: the port kubelet probes are rewritten to, redirected straight to the app (default 4002). */
  probePort?: number;
}

export type InjectionResult =
  | { action: "patch"; ops: JsonPatchOp[]; summary: string; warnings: string[] }
  | { action: "skip"; reason: "already-injected" | "opted-out" }
  /** Injecting would break the pod (a port clash, an unusable port name): admitted unchanged, with the reason as a warning. */
  | { action: "refuse"; reason: string };

/** Kubernetes port names (IANA_SVC_NAME) are at most 15 characters. */
const MAX_PORT_NAME = 15;
const RENAME_PREFIX = "cm-";

/** The sidecar's image, from any registry, with any tag (connmeter/sidecar, ghcr.io/x/connmeter-sidecar:1). */
const SIDECAR_IMAGE = /(^|\/)connmeter[/-]sidecar(:[^/]*|@sha256:[0-9a-f]+)?$/;

/** Whether the pod already runs connmeter's sidecar (injected, or pasted from the chart's snippet): by container name, admin port name or image. */
export function hasSidecar(spec: Pod["spec"]): boolean {
  return [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].some((c) => c.name === SIDECAR_CONTAINER
    || (c.ports ?? []).some((p) => p.name === SIDECAR_ADMIN_PORT_NAME) || SIDECAR_IMAGE.test(c.image ?? ""));
}

/**
 * The app port's new name: `cm-` + the old one, cut to 15 characters, a valid IANA_SVC_NAME
 * (no trailing or doubled hyphen) and unused by any other port of the pod.
 */
export function renamedPort(name: string, taken: ReadonlySet<string>): string {
  const base = `${RENAME_PREFIX}${name}`.replace(/--+/g, "-");
  for (let i = 0; i < 100; i++) {
    const suffix = i === 0 ? "" : String(i);
    const candidate = `${base.slice(0, MAX_PORT_NAME - suffix.length).replace(/-+$/, "")}${suffix}`;
    if (!taken.has(candidate)) return candidate;
  }
  throw new Error(`no free port name for ${name}`);
}

interface Takeover {
  containerIndex: number;
  portIndex: number;
  name: string;
  containerPort: number;
  newName: string;
}

/** The injection for `pod`: patch operations, or why none. */
export function buildInjection(pod: Pod, settings: InjectionSettings): InjectionResult {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  if (labels[INJECT_LABEL] === "disabled") return { action: "skip", reason: "opted-out" };
  if (hasSidecar(pod.spec) || annotations[INJECTED_ANNOTATION] !== undefined) return { action: "skip", reason: "already-injected" };
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) return { action: "refuse", reason: "the pod has no containers" };

  const mode = modeOf(pod, settings);
  const portName = annotations[INJECT_PORT_ANNOTATION] || settings.portName;
  const clash = portClash(spec.containers, spec.initContainers ?? [], settings);
  if (clash) return { action: "refuse", reason: clash };
  if (mode === "redirect") return buildRedirect(pod, settings, portName);

  const warnings: string[] = [];
  const takeover = findTakeover(spec.containers, spec.initContainers ?? [], portName);
  if (!takeover) {
    warnings.push(`connmeter: no container port named "${portName}": the sidecar meters only what is sent to its port ${settings.listenPort}; `
      + `name the app's port "${portName}" and point the Service's targetPort at that name, or set the pod annotation ${INJECT_PORT_ANNOTATION}`);
  }
  const ops: JsonPatchOp[] = [];
  if (takeover) ops.push(...renameOps(spec.containers[takeover.containerIndex]!, takeover));
  const sidecar = sidecarContainer(settings, { portName: takeover?.name, upstreamPort: takeover?.containerPort });
  ops.push(appendInit(spec.initContainers, sidecar));
  const summary = takeover
    ? `port ${takeover.name} of container ${spec.containers[takeover.containerIndex]!.name} renamed ${takeover.newName}; sidecar on ${takeover.name} (${settings.listenPort}) -> 127.0.0.1:${takeover.containerPort}`
    : `sidecar on ${settings.listenPort} -> 127.0.0.1:${settings.defaultUpstreamPort}; no port taken over`;
  ops.push(markInjected(pod, summary));
  return { action: "patch", ops, summary, warnings };
}

/** Appends an init container: the whole array when the pod has none (a JSON patch cannot add into a missing array). */
export function appendInit(inits: Container[] | undefined, c: Container): JsonPatchOp {
  return inits === undefined ? { op: "add", path: "/spec/initContainers", value: [c] } : { op: "add", path: "/spec/initContainers/-", value: c };
}

function modeOf(pod: Pod, settings: InjectionSettings): InjectionMode {
  const v = pod.metadata?.labels?.[INJECT_MODE_LABEL] ?? pod.metadata?.annotations?.[INJECT_MODE_LABEL];
  return v === "redirect" || v === "named-port" ? v : settings.mode;
}

/** A containerPort of the pod equal to one the sidecar listens on: both could not bind it in one network namespace. */
function portClash(containers: Container[], inits: Container[], settings: InjectionSettings): string | undefined {
  for (const c of [...containers, ...inits]) {
    for (const p of c.ports ?? []) {
      if (p.containerPort === settings.listenPort || p.containerPort === settings.adminPort) {
        return `container ${c.name} uses port ${p.containerPort}, which the sidecar needs (listen ${settings.listenPort}, admin ${settings.adminPort}): `
          + "set the policy's spec.sidecar.adminPort or the chart's injection.listenPort to a free port";
      }
    }
  }
  return undefined;
}

/** The first app container with a TCP port named `name`, and the name it gets. */
function findTakeover(containers: Container[], inits: Container[], name: string): Takeover | undefined {
  const taken = new Set([...containers, ...inits].flatMap((c) => (c.ports ?? []).map((p) => p.name ?? "")));
  for (const [ci, c] of containers.entries()) {
    const pi = (c.ports ?? []).findIndex((p) => p.name === name && (p.protocol ?? "TCP") === "TCP");
    if (pi < 0) continue;
    return { containerIndex: ci, portIndex: pi, name, containerPort: c.ports![pi]!.containerPort, newName: renamedPort(name, taken) };
  }
  return undefined;
}

const PROBES = ["livenessProbe", "readinessProbe", "startupProbe"] as const;
const HOOKS = ["postStart", "preStop"] as const;

/** Renames the port and every probe or hook of the same container that names it (a `test` first: the patch fails rather than rename the wrong port). */
function renameOps(c: Container, t: Takeover): JsonPatchOp[] {
  const base = `/spec/containers/${t.containerIndex}`;
  return [
    { op: "test", path: `${base}/ports/${t.portIndex}/name`, value: t.name },
    { op: "replace", path: `${base}/ports/${t.portIndex}/name`, value: t.newName },
    ...probePortOps(c, base, (port) => port === t.name, t.newName),
  ];
}

/** Replaces the port of every httpGet/tcpSocket probe and lifecycle hook of container `c` (at JSON pointer `base`) for which `matches` holds. */
export function probePortOps(c: Container, base: string, matches: (port: number | string | undefined) => boolean, to: number | string): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  const rewrite = (probe: Probe | undefined, path: string) => {
    for (const kind of ["httpGet", "tcpSocket"] as const) {
      if (probe?.[kind] && matches(probe[kind].port)) ops.push({ op: "replace", path: `${path}/${kind}/port`, value: to });
    }
  };
  for (const p of PROBES) rewrite(c[p], `${base}/${p}`);
  for (const h of HOOKS) rewrite(c.lifecycle?.[h], `${base}/lifecycle/${h}`);
  return ops;
}

/** The sidecar: its public port named `portName` (else connmeter-ws), forwarding to 127.0.0.1:`upstreamPort`; `uid` its user (redirect mode's iptables skip it). */
export function sidecarContainer(s: InjectionSettings, o: { portName?: string | undefined; upstreamPort?: number | undefined; uid?: number }): Container {
  const env: Record<string, unknown>[] = [
    { name: "CONNMETER_LISTEN", value: `0.0.0.0:${s.listenPort}` },
    { name: "CONNMETER_UPSTREAM", value: `http://127.0.0.1:${o.upstreamPort ?? s.defaultUpstreamPort}` },
    { name: "CONNMETER_ADMIN", value: `0.0.0.0:${s.adminPort}` },
    { name: "CONNMETER_ADMIN_TOKEN", valueFrom: { secretKeyRef: { name: s.adminTokenSecret, key: "token", optional: true } } },
  ];
  if (s.awaitBudgetSeconds) env.push({ name: "CONNMETER_AWAIT_BUDGET_SECONDS", value: String(s.awaitBudgetSeconds) });
  if (s.drainSeconds !== undefined) env.push({ name: "CONNMETER_DRAIN_SECONDS", value: String(s.drainSeconds) });
  if (s.topicGroups.length > 0) env.push({ name: "CONNMETER_TOPIC_GROUPS", value: s.topicGroups.join(",") });
  return {
    name: SIDECAR_CONTAINER,
    image: s.image,
    ...(s.imagePullPolicy ? { imagePullPolicy: s.imagePullPolicy } : {}),
    // A native sidecar: starts before the app containers, stops after them.
    restartPolicy: "Always",
    env,
    ports: [
      { name: o.portName ?? "connmeter-ws", containerPort: s.listenPort, protocol: "TCP" },
      { name: SIDECAR_ADMIN_PORT_NAME, containerPort: s.adminPort, protocol: "TCP" },
    ],
    readinessProbe: { httpGet: { path: "/readyz", port: SIDECAR_ADMIN_PORT_NAME }, periodSeconds: 2, failureThreshold: 2 },
    livenessProbe: { httpGet: { path: "/healthz", port: SIDECAR_ADMIN_PORT_NAME }, periodSeconds: 10 },
    resources: { requests: { ...s.resources.requests }, limits: { ...s.resources.limits } },
    securityContext: {
      runAsNonRoot: true, runAsUser: o.uid ?? 1000, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" },
    },
  };
}

/** Marks the pod injected (the annotation map is added whole when the pod has none). */
export function markInjected(pod: Pod, summary: string): JsonPatchOp {
  return pod.metadata?.annotations === undefined
    ? { op: "add", path: "/metadata/annotations", value: { [INJECTED_ANNOTATION]: summary } }
    : { op: "add", path: `/metadata/annotations/${pointerToken(INJECTED_ANNOTATION)}`, value: summary };
}
