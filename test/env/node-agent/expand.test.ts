import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { ContainerConfigError, expand, expandCommand, parseQuantity, resolveEnv, type EnvSources } from "./expand.js";
import { containerArgv, imageProblem, imageRepository, lookupImage } from "./images.js";

const vars: Record<string, string> = { VAR_A: "A", VAR_B: "B", VAR_C: "C", VAR_REF: "$(VAR_A)", VAR_EMPTY: "" };
const lookup = (name: string) => vars[name];

describe("expand: $(VAR) as Kubernetes expands it", () => {
  it.each([
    ["$(VAR_A)", "A"],
    ["___$(VAR_B)___", "___B___"],
    ["$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"],
    ["$(VAR_REF)", "$(VAR_A)"], // no recursion
    ["$(VAR_EMPTY)", ""],
    ["$(UNKNOWN)", "$(UNKNOWN)"],
    ["$$(VAR_A)", "$(VAR_A)"], // $$ escapes
    ["$$$(VAR_A)", "$A"],
    ["$$$$(VAR_A)", "$$(VAR_A)"],
    ["$(VAR_A", "$(VAR_A"], // unterminated
    ["$VAR_A", "$VAR_A"], // no parentheses, no expansion
    ["$", "$"],
    ["VAR_A$", "VAR_A$"],
    ["$()", "$()"],
    ["$(VAR_A)$(", "A$("],
    ["f00$(VAR_A)$$", "f00A$"],
    ["héllo $(VAR_B) 🎉$", "héllo B 🎉$"],
  ])("expands %j to %j", (input, want) => {
    expect(expand(input, lookup)).toBe(want);
  });
});

function pod(overrides: Partial<V1Pod> = {}): V1Pod {
  return {
    metadata: { name: "chat-1", namespace: "prod", uid: "u-1", labels: { app: "chat", tier: "web" }, annotations: { note: "x" } },
    spec: { nodeName: "node-1", serviceAccountName: "chat", containers: [] },
    ...overrides,
  };
}

const sources: EnvSources = {
  podIP: () => "198.18.1.7",
  hostIP: "198.18.1.1",
  serviceEnv: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: "16443" },
  nodeAllocatable: { cpu: "8", memory: "16Gi" },
  configMap: async (_ns, name) => (name === "cm" ? { color: "blue", "bad key": "x", PORT: "4000" } : undefined),
  secret: async (_ns, name) => (name === "sec" ? { token: "t0k" } : undefined),
};

describe("resolveEnv", () => {
  it("resolves the downward API, references to earlier variables and service variables", async () => {
    const c: V1Container = {
      name: "main",
      env: [
        { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: "LISTEN", value: "$(POD_IP):$(PORT)" },
        { name: "PORT", value: "4001" },
        { name: "API", value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)" },
        { name: "NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
        { name: "HOST_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
        { name: "SA", valueFrom: { fieldRef: { fieldPath: "spec.serviceAccountName" } } },
        { name: "TIER", valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
        { name: "LABELS", valueFrom: { fieldRef: { fieldPath: "metadata.labels" } } },
        { name: "CPU", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
        { name: "MEM_MI", valueFrom: { resourceFieldRef: { resource: "requests.memory", divisor: "1Mi" } } },
      ],
      resources: { requests: { memory: "64Mi" } },
    };
    const env = await resolveEnv(pod(), c, sources);
    expect(Object.fromEntries(env)).toEqual({
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: "16443",
      POD_IP: "198.18.1.7",
      LISTEN: "198.18.1.7:$(PORT)", // PORT is defined after LISTEN
      PORT: "4001",
      API: "https://127.0.0.1:16443",
      NAME: "chat-1",
      NS: "prod",
      NODE: "node-1",
      HOST_IP: "198.18.1.1",
      SA: "chat",
      TIER: "web",
      LABELS: 'app="chat"\ntier="web"',
      CPU: "8", // no limit: the node's allocatable
      MEM_MI: "64",
    });
  });

  it("takes envFrom first (with prefix, skipping invalid names), then env overrides", async () => {
    const c: V1Container = {
      name: "main",
      envFrom: [{ configMapRef: { name: "cm" }, prefix: "CM_" }, { secretRef: { name: "sec" } }],
      env: [{ name: "CM_color", value: "red" }, { name: "SECRET_COPY", value: "$(token)" }],
    };
    const env = Object.fromEntries(await resolveEnv(pod(), c, sources));
    expect(env).toMatchObject({ CM_color: "red", CM_PORT: "4000", token: "t0k", SECRET_COPY: "t0k" });
    expect(env).not.toHaveProperty("CM_bad key");
  });

  it("fails like the kubelet (CreateContainerConfigError) on a missing ConfigMap key unless optional", async () => {
    const missing: V1Container = { name: "main", env: [{ name: "X", valueFrom: { configMapKeyRef: { name: "cm", key: "nope" } } }] };
    await expect(resolveEnv(pod(), missing, sources)).rejects.toThrow(ContainerConfigError);
    await expect(resolveEnv(pod(), missing, sources)).rejects.toThrow("couldn't find key nope in configmap prod/cm");
    const optional: V1Container = { name: "main", env: [{ name: "X", valueFrom: { configMapKeyRef: { name: "gone", key: "k", optional: true } } }] };
    expect((await resolveEnv(pod(), optional, sources)).has("X")).toBe(false);
    const noSecret: V1Container = { name: "main", envFrom: [{ secretRef: { name: "gone" } }] };
    await expect(resolveEnv(pod(), noSecret, sources)).rejects.toThrow('secret "gone" not found');
  });

  it("expands command and args against the final environment", () => {
    const env = new Map([["POD_IP", "198.18.1.7"], ["PORT", "4000"]]);
    expect(expandCommand(["--listen", "$(POD_IP):$(PORT)", "$$(POD_IP)", "$(NOPE)"], env)).toEqual(["--listen", "198.18.1.7:4000", "$(POD_IP)", "$(NOPE)"]);
  });

  it.each([["500m", 0.5], ["2", 2], ["64Mi", 64 * 2 ** 20], ["1G", 1e9], ["1.5Gi", 1.5 * 2 ** 30], ["1e3", 1000]])("parses quantity %s", (q, n) => {
    expect(parseQuantity(q)).toBe(n);
  });
});

describe("images", () => {
  it.each([
    ["connmeter/sidecar", "connmeter/sidecar"],
    ["connmeter/sidecar:dev", "connmeter/sidecar"],
    ["ghcr.io/acme/connmeter/sidecar:1.2.3", "acme/connmeter/sidecar"],
    ["localhost:5000/connmeter/demo-app:latest", "connmeter/demo-app"],
    ["docker.io/library/nginx@sha256:abc", "nginx"],
  ])("reads the repository of %s", (image, repo) => {
    expect(imageRepository(image)).toBe(repo);
  });

  it("maps the connmeter images to their entry points, whatever the registry and tag", () => {
    expect(lookupImage("connmeter/sidecar:dev")?.entrypoint).toEqual(["node", "--max-semi-space-size=16", "dist/sidecar/main.js"]);
    expect(lookupImage("ghcr.io/acme/connmeter/operator:v1")?.entrypoint).toEqual(["node", "dist/operator/main.js"]);
    expect(lookupImage("connmeter-demo-app:1")?.entrypoint).toEqual(["node", "dist/test/support/phoenix-server-main.js"]);
    expect(lookupImage("nginx:1.27")).toBeUndefined();
  });

  it("uses command instead of the entry point and appends args, as Docker does", () => {
    const sidecar = lookupImage("connmeter/sidecar")!;
    expect(containerArgv(sidecar, undefined, ["--listen", "x"])).toEqual([process.execPath, "--max-semi-space-size=16", "dist/sidecar/main.js", "--listen", "x"]);
    expect(containerArgv(sidecar, ["node", "other.js"], ["a"])).toEqual([process.execPath, "other.js", "a"]);
  });

  it("explains an unknown image or a missing build, with the fix", () => {
    expect(imageProblem("nginx", "/nonexistent")?.message).toContain("is not known to the connmeter node agent");
    expect(imageProblem("connmeter/sidecar", "/nonexistent")?.message).toContain("run `make build`");
    expect(imageProblem("connmeter/node", "/nonexistent")).toBeUndefined();
  });
});
