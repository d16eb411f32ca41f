import { describe, expect, it } from "vitest";
import type { Container, Pod } from "../../../../operator/webhook/pod-spec.js";
import { iptablesScript } from "../../../../operator/webhook/redirect-patch.js";
import { buildInjection, type InjectionSettings } from "../../../../operator/webhook/sidecar-patch.js";
import { applyJsonPatch } from "../../../support/json-patch.js";

const SETTINGS: InjectionSettings = {
  image: "connmeter/sidecar:0.1.0", listenPort: 4001, adminPort: 9090, resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
  portName: "http", mode: "named-port", topicGroups: [], adminTokenSecret: "connmeter-admin-token", defaultUpstreamPort: 4000,
  redirectInitImage: "registry.example/iptables:1", probePort: 4002,
};

const app = (over: Partial<Container> = {}): Container => ({
  name: "app", image: "chat:1", ports: [{ containerPort: 8080 }],
  readinessProbe: { httpGet: { path: "/health", port: 8080 } }, livenessProbe: { tcpSocket: { port: 8080 } }, ...over,
});
const pod = (c: Container, inits?: Container[]): Pod => ({ metadata: { labels: { app: "chat", "connmeter.io/inject-mode": "redirect" } }, spec: { containers: [c], ...(inits ? { initContainers: inits } : {}) } });

function patched(p: Pod, s = SETTINGS): Pod {
  const r = buildInjection(p, s);
  if (r.action !== "patch") throw new Error(JSON.stringify(r));
  return applyJsonPatch(p, r.ops);
}

describe("redirect mode (numeric targetPort)", () => {
  it("adds the iptables init container first, with NET_ADMIN and NET_RAW only, and the sidecar last under its own UID", () => {
    const out = patched(pod(app(), [{ name: "migrate", image: "chat:1" }]));
    expect(out.spec!.initContainers!.map((c) => c.name)).toEqual(["connmeter-init", "migrate", "connmeter"]);
    const init = out.spec!.initContainers![0]!;
    expect(init.image).toBe("registry.example/iptables:1");
    expect(init.securityContext).toMatchObject({ capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] }, allowPrivilegeEscalation: false });
    expect(init.resources).toEqual({ requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } });
    expect((init.command as string[]).at(-1)).toBe(iptablesScript(8080, 4001, 4002, 2102));
    const sidecar = out.spec!.initContainers![2]!;
    expect(sidecar.restartPolicy).toBe("Always");
    expect(sidecar.securityContext).toMatchObject({ runAsUser: 2102, runAsNonRoot: true });
    expect(sidecar.env).toContainEqual({ name: "CONNMETER_UPSTREAM", value: "http://127.0.0.1:8080" });
    // The app's port is not renamed: the Service's numeric targetPort is redirected instead.
    expect(out.spec!.containers[0]!.ports).toEqual([{ containerPort: 8080 }]);
  });

  it("rewrites the app's TCP and HTTP probes on the redirected port (by number or name) to the probe port, which goes straight to the app", () => {
    const out = patched(pod(app({ ports: [{ name: "web", containerPort: 8080 }], startupProbe: { httpGet: { port: "web" } }, readinessProbe: { httpGet: { port: 9999 } } })));
    const c = out.spec!.containers[0]!;
    expect(c.livenessProbe).toEqual({ tcpSocket: { port: 4002 } });
    expect(c.startupProbe).toEqual({ httpGet: { port: 4002 } });
    expect(c.readinessProbe).toEqual({ httpGet: { port: 9999 } });
  });

  it("skips the sidecar's own traffic by UID and loopback, so its upstream is never redirected back to it", () => {
    const script = iptablesScript(8080, 4001, 4002, 2102).split("\n");
    expect(script).toContain("iptables -t nat -A CONNMETER_OUT -m owner --uid-owner 2102 -j RETURN");
    expect(script.indexOf("iptables -t nat -A CONNMETER_IN -p tcp --dport 4002 -j REDIRECT --to-ports 8080"))
      .toBeLessThan(script.indexOf("iptables -t nat -A CONNMETER_IN -p tcp --dport 8080 -j REDIRECT --to-ports 4001"));
  });

  it("is refused with the fix when no init image is configured, or the app port is ambiguous", () => {
    const { redirectInitImage: _unused, ...noImage } = SETTINGS;
    expect(buildInjection(pod(app()), noImage)).toMatchObject({ action: "refuse", reason: expect.stringContaining("injection.redirect.enabled") });
    const two = app({ ports: [{ containerPort: 8080 }, { containerPort: 8081 }] });
    expect(buildInjection(pod(two), SETTINGS)).toMatchObject({ action: "refuse", reason: expect.stringContaining("connmeter.io/inject-port") });
    const named = patched({ ...pod(two), metadata: { labels: { "connmeter.io/inject-mode": "redirect" }, annotations: { "connmeter.io/inject-port": "8081" } } });
    expect(named.spec!.initContainers![0]!.command).toEqual(["sh", "-c", iptablesScript(8081, 4001, 4002, 2102)]);
  });
});
