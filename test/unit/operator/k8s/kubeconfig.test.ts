import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SERVICE_ACCOUNT_DIR, loadKubeConfig } from "../../../../operator/k8s/kubeconfig.js";

const yaml = (server: string, ctx = "c") => `apiVersion: v1
kind: Config
current-context: ${ctx}
clusters: [{name: ${ctx}, cluster: {server: "${server}"}}]
users: [{name: ${ctx}, user: {token: t}}]
contexts: [{name: ${ctx}, context: {cluster: ${ctx}, user: ${ctx}}}]
`;

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "kc-"));
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("loadKubeConfig", () => {
  it("prefers an explicit --kubeconfig over everything else", () => {
    const d = tmp();
    writeFileSync(join(d, "explicit"), yaml("https://explicit:6443"));
    writeFileSync(join(d, "env"), yaml("https://env:6443"));
    const kc = loadKubeConfig({ kubeconfig: join(d, "explicit"), env: { KUBECONFIG: join(d, "env"), KUBERNETES_SERVICE_HOST: "10.0.0.1" } });
    expect(kc.getCurrentCluster()?.server).toBe("https://explicit:6443");
  });

  it("names the missing file of an explicit --kubeconfig", () => {
    expect(() => loadKubeConfig({ kubeconfig: "/nonexistent/kc" })).toThrow(/--kubeconfig \/nonexistent\/kc: no such file/);
  });

  it("uses the ServiceAccount in a pod", () => {
    const root = tmp();
    const sa = join(root, SERVICE_ACCOUNT_DIR);
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, "token"), "tok");
    writeFileSync(join(sa, "ca.crt"), "ca");
    writeFileSync(join(sa, "namespace"), "connmeter-system");
    // client-node's loadFromCluster reads the server address from process.env itself.
    vi.stubEnv("KUBERNETES_SERVICE_HOST", "10.96.0.1");
    vi.stubEnv("KUBERNETES_SERVICE_PORT", "443");
    const kc = loadKubeConfig({ env: process.env, fsRoot: root, home: tmp() });
    expect(kc.getCurrentCluster()?.server).toBe("https://10.96.0.1:443");
    expect(kc.getCurrentCluster()?.caFile).toBe(join(sa, "ca.crt"));
  });

  it("falls back to $KUBECONFIG (first file's context wins), then ~/.kube/config", () => {
    const d = tmp();
    writeFileSync(join(d, "a"), yaml("https://a:6443", "a"));
    writeFileSync(join(d, "b"), yaml("https://b:6443", "b"));
    const kc = loadKubeConfig({ env: { KUBECONFIG: `${join(d, "missing")}:${join(d, "a")}:${join(d, "b")}` }, home: tmp() });
    expect(kc.getCurrentCluster()?.server).toBe("https://a:6443");
    expect(kc.getContexts().map((c) => c.name)).toEqual(["a", "b"]);
    const home = tmp();
    mkdirSync(join(home, ".kube"));
    writeFileSync(join(home, ".kube", "config"), yaml("https://home:6443"));
    expect(loadKubeConfig({ env: {}, home }).getCurrentCluster()?.server).toBe("https://home:6443");
  });

  it("says where it looked and how to fix it when nothing is found", () => {
    expect(() => loadKubeConfig({ env: {}, home: tmp() })).toThrow(
      /no Kubernetes credentials found; looked at: --kubeconfig \(not given\); in-cluster ServiceAccount \(KUBERNETES_SERVICE_HOST not set\); \$KUBECONFIG \(not set\); .*\.kube\/config \(not found\)\. Pass --kubeconfig/,
    );
  });
});
