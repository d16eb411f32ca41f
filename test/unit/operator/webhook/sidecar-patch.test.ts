import { describe, expect, it } from "vitest";
import { buildInjection, hasSidecar, renamedPort, type InjectionSettings } from "../../../../operator/webhook/sidecar-patch.js";
import type { Container, Pod } from "../../../../operator/webhook/pod-spec.js";
import { applyJsonPatch } from "../../../support/json-patch.js";

const SETTINGS: InjectionSettings = {
  image: "connmeter/sidecar:0.1.0",
  listenPort: 4001,
  adminPort: 9090,
  resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
  portName: "http",
  mode: "named-port",
  awaitBudgetSeconds: 30,
  topicGroups: ["room:*"],
  adminTokenSecret: "connmeter-admin-token",
  defaultUpstreamPort: 4000,
};

function app(over: Partial<Container> = {}): Container {
  return {
    name: "app",
    image: "chat:1",
    ports: [{ name: "http", containerPort: 4000 }],
    readinessProbe: { httpGet: { path: "/health", port: "http" }, periodSeconds: 2 },
    livenessProbe: { tcpSocket: { port: "http" } },
    ...over,
  };
}

function pod(spec: Partial<Pod["spec"]> & { containers: Container[] }, metadata: Pod["metadata"] = { generateName: "chat-", labels: { app: "chat" } }): Pod {
  return { apiVersion: "v1", kind: "Pod", metadata, spec: { restartPolicy: "Always", ...spec } };
}

function injected(p: Pod, settings = SETTINGS): Pod {
  const r = buildInjection(p, settings);
  if (r.action !== "patch") throw new Error(`expected a patch, got ${JSON.stringify(r)}`);
  return applyJsonPatch(p, r.ops);
}

function sidecarOf(p: Pod): Container {
  const c = p.spec?.initContainers?.find((i) => i.name === "connmeter");
  if (!c) throw new Error("no sidecar");
  return c;
}

function env(c: Container, name: string): unknown {
  return (c.env as { name: string; value?: string; valueFrom?: unknown }[]).find((e) => e.name === name);
}

describe("buildInjection: named-port takeover", () => {
  it("renames the app's named port, gives the sidecar that name, and points it at the app's containerPort", () => {
    const out = injected(pod({ containers: [app({ ports: [{ name: "http", containerPort: 8080 }] })] }));
    expect(out.spec!.containers[0]!.ports).toEqual([{ name: "cm-http", containerPort: 8080 }]);
    const s = sidecarOf(out);
    expect(s.restartPolicy).toBe("Always");
    expect(s.ports).toEqual([
      { name: "http", containerPort: 4001, protocol: "TCP" },
      { name: "connmeter-admin", containerPort: 9090, protocol: "TCP" },
    ]);
    expect(env(s, "CONNMETER_UPSTREAM")).toEqual({ name: "CONNMETER_UPSTREAM", value: "http://127.0.0.1:8080" });
    expect(env(s, "CONNMETER_LISTEN")).toEqual({ name: "CONNMETER_LISTEN", value: "0.0.0.0:4001" });
    expect(out.metadata!.annotations!["connmeter.io/injected"]).toContain("cm-http");
  });

  it("renames probe references to the port so the kubelet still probes the app, and leaves numeric ones", () => {
    const c = app({
      startupProbe: { httpGet: { path: "/", port: 4000 } },
      lifecycle: { preStop: { httpGet: { path: "/drain", port: "http" } } },
    });
    const out = injected(pod({ containers: [c] })).spec!.containers[0]!;
    expect(out.readinessProbe).toEqual({ httpGet: { path: "/health", port: "cm-http" }, periodSeconds: 2 });
    expect(out.livenessProbe).toEqual({ tcpSocket: { port: "cm-http" } });
    expect(out.startupProbe).toEqual({ httpGet: { path: "/", port: 4000 } });
    expect(out.lifecycle!.preStop).toEqual({ httpGet: { path: "/drain", port: "cm-http" } });
  });

  it("always sets the sidecar's requests and limits, and reads the admin token from the namespace's own Secret, optionally", () => {
    const s = sidecarOf(injected(pod({ containers: [app()] })));
    expect(s.resources).toEqual({ requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } });
    expect(env(s, "CONNMETER_ADMIN_TOKEN")).toEqual({
      name: "CONNMETER_ADMIN_TOKEN", valueFrom: { secretKeyRef: { name: "connmeter-admin-token", key: "token", optional: true } },
    });
    expect(env(s, "CONNMETER_AWAIT_BUDGET_SECONDS")).toEqual({ name: "CONNMETER_AWAIT_BUDGET_SECONDS", value: "30" });
    expect(env(s, "CONNMETER_TOPIC_GROUPS")).toEqual({ name: "CONNMETER_TOPIC_GROUPS", value: "room:*" });
    expect(s.securityContext).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
  });

  it("adds the initContainers array when the pod has none, and appends after existing init containers", () => {
    const bare = buildInjection(pod({ containers: [app()] }), SETTINGS);
    expect(bare.action === "patch" && bare.ops.find((o) => o.path.startsWith("/spec/initContainers"))).toMatchObject({ op: "add", path: "/spec/initContainers" });
    const migrate: Container = { name: "migrate", image: "chat:1", command: ["mix", "ecto.migrate"] };
    const out = injected(pod({ containers: [app()], initContainers: [migrate] }));
    expect(out.spec!.initContainers!.map((c) => c.name)).toEqual(["migrate", "connmeter"]);
    expect(out.spec!.initContainers![0]).toEqual(migrate);
  });

  it("takes the port over in the container that holds it, leaving the others alone", () => {
    const metrics: Container = { name: "exporter", image: "exp:1", ports: [{ name: "metrics", containerPort: 9100 }], livenessProbe: { httpGet: { port: "metrics" } } };
    const out = injected(pod({ containers: [metrics, app({ ports: [{ name: "epmd", containerPort: 4369 }, { name: "http", containerPort: 4000 }] })] }));
    expect(out.spec!.containers[0]).toEqual(metrics);
    expect(out.spec!.containers[1]!.ports).toEqual([{ name: "epmd", containerPort: 4369 }, { name: "cm-http", containerPort: 4000 }]);
  });

  it("takes over the port the pod names in connmeter.io/inject-port", () => {
    const out = injected(pod({ containers: [app({ ports: [{ name: "web", containerPort: 4000 }], readinessProbe: { httpGet: { port: "web" } } })] },
      { labels: { app: "chat" }, annotations: { "connmeter.io/inject-port": "web", other: "kept" } }));
    expect(out.spec!.containers[0]!.ports![0]!.name).toBe("cm-web");
    expect(sidecarOf(out).ports![0]!.name).toBe("web");
    expect(out.metadata!.annotations!.other).toBe("kept");
  });

  it("injects without a takeover when no port has the name (numeric targetPort), and warns how to fix it", () => {
    const p = pod({ containers: [app({ ports: [{ containerPort: 4000 }], readinessProbe: { httpGet: { port: 4000 } }, livenessProbe: undefined })] });
    const r = buildInjection(p, SETTINGS);
    expect(r.action).toBe("patch");
    if (r.action !== "patch") return;
    expect(r.warnings[0]).toContain('no container port named "http"');
    const out = applyJsonPatch(p, r.ops);
    expect(out.spec!.containers[0]).toEqual(p.spec!.containers[0]);
    expect(sidecarOf(out).ports![0]!.name).toBe("connmeter-ws");
    expect(env(sidecarOf(out), "CONNMETER_UPSTREAM")).toEqual({ name: "CONNMETER_UPSTREAM", value: "http://127.0.0.1:4000" });
  });

  it("keeps fields it does not know, such as another native sidecar's restartPolicy", () => {
    const mesh: Container = { name: "mesh-proxy", image: "mesh:1", restartPolicy: "Always", futureField: { x: 1 } };
    const p = pod({ containers: [app()], initContainers: [mesh], hostAliases: [{ ip: "198.18.0.1", hostnames: ["db"] }] });
    const out = injected(p);
    expect(out.spec!.initContainers![0]).toEqual(mesh);
    expect(out.spec!.hostAliases).toEqual(p.spec!.hostAliases);
  });
});

describe("buildInjection: no patch", () => {
  it("is idempotent: an injected pod (reinvocation) gets no second sidecar", () => {
    const once = injected(pod({ containers: [app()] }));
    expect(buildInjection(once, SETTINGS)).toEqual({ action: "skip", reason: "already-injected" });
  });

  it("leaves pods that carry the chart's snippet alone", () => {
    const snippet: Container = { name: "meter", image: "connmeter/sidecar:0.1.0", restartPolicy: "Always", ports: [{ name: "connmeter-admin", containerPort: 9090 }] };
    expect(buildInjection(pod({ containers: [app()], initContainers: [snippet] }), SETTINGS)).toEqual({ action: "skip", reason: "already-injected" });
  });

  it("honours the opt-out label connmeter.io/inject=disabled", () => {
    expect(buildInjection(pod({ containers: [app()] }, { labels: { "connmeter.io/inject": "disabled" } }), SETTINGS))
      .toEqual({ action: "skip", reason: "opted-out" });
  });

  it("refuses (admits unchanged) a pod whose container already uses the sidecar's port", () => {
    const r = buildInjection(pod({ containers: [app({ ports: [{ name: "http", containerPort: 4001 }] })] }), SETTINGS);
    expect(r.action).toBe("refuse");
    expect(r.action === "refuse" && r.reason).toContain("4001");
  });
});

describe("renamedPort", () => {
  it("keeps names within 15 characters, valid and unused", () => {
    expect(renamedPort("http", new Set())).toBe("cm-http");
    expect(renamedPort("websocket-public", new Set())).toBe("cm-websocket-pu");
    expect(renamedPort("abcdefghijk-xyz", new Set())).toBe("cm-abcdefghijk");
    expect(renamedPort("http", new Set(["cm-http"]))).toBe("cm-http1");
    for (const n of ["x", "a-b", "long-name-here1", "p--q"]) expect(renamedPort(n, new Set())).toMatch(/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/);
  });
});

describe("hasSidecar", () => {
  it("finds the sidecar by container name or admin port name, in init or app containers", () => {
    expect(hasSidecar({ containers: [{ name: "connmeter" }] })).toBe(true);
    expect(hasSidecar({ containers: [{ name: "meter", image: "ghcr.io/acme/connmeter/sidecar:1.2" }] })).toBe(true);
    expect(hasSidecar({ containers: [{ name: "meter", image: "registry:5000/connmeter-sidecar@sha256:abcd" }] })).toBe(true);
    expect(hasSidecar({ containers: [{ name: "app", image: "connmeter/sidecar-demo:1" }] })).toBe(false);
    expect(hasSidecar({ containers: [app()] })).toBe(false);
    expect(hasSidecar(undefined)).toBe(false);
  });
});
