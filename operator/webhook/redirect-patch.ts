// Redirect mode (opt-in: pod label or annotation connmeter.io/inject-mode=redirect, or the
// policy's spec.injection.mode): for Services with a numeric targetPort, where no port name
// can be taken over. As Linkerd's proxy-init does, an init container with NET_ADMIN adds nat
// rules before any other container starts:
//   PREROUTING  tcp --dport <probe port> -> REDIRECT <app port>   kubelet probes, straight to the app
//               tcp --dport <app port>   -> REDIRECT <listen>     everyone else, to the sidecar
//   OUTPUT      the sidecar's own UID, 127.0.0.1 -> RETURN        no loop; the sidecar reaches the app on loopback
//               tcp --dport <app port>   -> REDIRECT <listen>     the pod's own calls to its IP
// The app's probes on that port are rewritten to the probe port: with every packet to the app
// port answered by the sidecar, a TCP probe would always succeed (Istio's reason for its probe
// rewrite); through the probe port the kubelet still probes the app itself.
// Pod Security "baseline" and "restricted" refuse NET_ADMIN and NET_RAW: namespaces enforcing
// them refuse these pods (chart README). The unprivileged named-port mode stays the default.
import { INJECT_PORT_ANNOTATION } from "../api/types.js";
import type { Container, JsonPatchOp, Pod } from "./pod-spec.js";
import { appendInit, markInjected, probePortOps, sidecarContainer, type InjectionResult, type InjectionSettings } from "./sidecar-patch.js";

/** The sidecar's user in redirect mode: the iptables rules let its own connections through by this UID. */
export const REDIRECT_SIDECAR_UID = 2102;
export const DEFAULT_PROBE_PORT = 4002;
export const INIT_CONTAINER = "connmeter-init";

/** The app container and port to redirect: by the name or number the pod or policy gives, else the pod's only TCP port. */
function appPort(containers: Container[], wanted: string): { index: number; port: number } | string {
  const tcp = containers.flatMap((c, index) => (c.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP").map((p) => ({ index, port: p.containerPort, name: p.name })));
  const byName = tcp.find((p) => p.name === wanted || String(p.port) === wanted);
  if (byName) return byName;
  if (/^\d+$/.test(wanted)) return { index: containers.findIndex((c) => c.ports?.length) >= 0 ? containers.findIndex((c) => c.ports?.length) : 0, port: Number(wanted) };
  if (tcp.length === 1) return tcp[0]!;
  return `redirect mode needs the app's port: set the pod annotation ${INJECT_PORT_ANNOTATION} to its number (the pod declares ${tcp.length} TCP ports)`;
}

/** The nat rules, as one shell script (each command fails the init container, and so the pod's start, if iptables refuses it). */
export function iptablesScript(app: number, listen: number, probe: number, uid: number): string {
  return [
    "set -eu",
    "iptables -t nat -N CONNMETER_IN",
    `iptables -t nat -A CONNMETER_IN -p tcp --dport ${probe} -j REDIRECT --to-ports ${app}`,
    `iptables -t nat -A CONNMETER_IN -p tcp --dport ${app} -j REDIRECT --to-ports ${listen}`,
    "iptables -t nat -A PREROUTING -p tcp -j CONNMETER_IN",
    "iptables -t nat -N CONNMETER_OUT",
    `iptables -t nat -A CONNMETER_OUT -m owner --uid-owner ${uid} -j RETURN`,
    "iptables -t nat -A CONNMETER_OUT -d 127.0.0.1/32 -j RETURN",
    `iptables -t nat -A CONNMETER_OUT -p tcp --dport ${app} -j REDIRECT --to-ports ${listen}`,
    "iptables -t nat -A OUTPUT -p tcp -j CONNMETER_OUT",
  ].join("\n");
}

export function buildRedirect(pod: Pod, s: InjectionSettings, wanted: string): InjectionResult {
  if (!s.redirectInitImage) {
    return { action: "refuse", reason: "redirect mode needs an init image with sh and iptables: the chart turns it off with injection.redirect.enabled=false (--sidecar-redirect-init-image empty)" };
  }
  const spec = pod.spec!;
  const found = appPort(spec.containers, wanted);
  if (typeof found === "string") return { action: "refuse", reason: found };
  const probe = s.probePort ?? DEFAULT_PROBE_PORT;
  if ([...spec.containers, ...(spec.initContainers ?? [])].some((c) => (c.ports ?? []).some((p) => p.containerPort === probe))) {
    return { action: "refuse", reason: `the probe port ${probe} is used by the pod: set --sidecar-probe-port to a free port` };
  }
  const names = new Set((spec.containers[found.index]?.ports ?? []).filter((p) => p.containerPort === found.port).map((p) => p.name));
  const init: Container = {
    name: INIT_CONTAINER,
    image: s.redirectInitImage,
    command: ["sh", "-c", iptablesScript(found.port, s.listenPort, probe, REDIRECT_SIDECAR_UID)],
    resources: { requests: { ...s.resources.requests }, limits: { ...s.resources.limits } },
    securityContext: {
      runAsUser: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
      capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] },
    },
  };
  const ops: JsonPatchOp[] = [
    // First, before any other init container: the rules hold from the pod's first packet.
    spec.initContainers === undefined ? { op: "add", path: "/spec/initContainers", value: [init] } : { op: "add", path: "/spec/initContainers/0", value: init },
    ...probePortOps(spec.containers[found.index]!, `/spec/containers/${found.index}`, (p) => p === found.port || (typeof p === "string" && names.has(p)), probe),
  ];
  const sidecar = sidecarContainer(s, { upstreamPort: found.port, uid: REDIRECT_SIDECAR_UID });
  ops.push(appendInit(spec.initContainers ?? [], sidecar));
  const summary = `redirect: tcp ${found.port} -> sidecar ${s.listenPort} (iptables, NET_ADMIN); probes on ${probe} -> ${found.port}`;
  ops.push(markInjected(pod, summary));
  return { action: "patch", ops, summary, warnings: [] };
}
