// The Helm chart on the local cluster, as a platform team uses it: `helm template` accepted by the
// API server (server-side dry run); `helm install` running the operator from the chart's own
// manifests (image connmeter/operator) under exactly the chart's RBAC, metering the example app
// (examples/demo-app.yaml, the README's sidecar snippet) and scaling it on connections; a real
// Prometheus (Debian's package) scraping the sidecars and the operator, every dashboard panel's
// query answered; `helm upgrade` keeping the admin token and the policies; `helm uninstall`
// leaving nothing but the CRD. The tests of this file run in order and share one release.
import type { V1Pod } from "@kubernetes/client-node";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "phoenix";
import { beforeAll, describe, expect, inject, it } from "vitest";
import {
  applyYaml, createNamespace, describeNamespace, kube, kubectl, listPods, requireBuilt, useHelmRelease, waitFor, waitForPodsReady, waitForReplicas,
} from "../env/e2e-helpers.js";
import {
  CHART_DIR, connpolRow, dashboardExprs, findHelm, findPrometheus, kubectlWith, parseYamlDocs, skipWithoutTool,
} from "../env/helm.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";

// Unique per run (ClusterRoles are cluster-wide); it contains "connmeter", so the chart names
// objects <release>-operator, <release>-admin-token, ...
const release = useHelmRelease("chart");
const RELEASE = release.name;
const INTERVAL_S = 2;
const skipAll = skipWithoutTool("chart e2e (test/e2e/chart.test.ts)", findHelm());
const noPrometheus = skipWithoutTool("dashboard queries against a real Prometheus (test/e2e/chart.test.ts)", findPrometheus());

const helmK = (args: string[]) => release.helm(args);

/** The example policy, made quick for a test: 2 s interval, 2 connections per pod, no down window. */
function policy(): string {
  const doc = parseYamlDocs(readFileSync(join(CHART_DIR, "examples/connectionpolicy.yaml"), "utf8"))[0] as unknown as { spec: Record<string, Record<string, unknown>> };
  doc.spec.scrapeIntervalSeconds = INTERVAL_S as never;
  doc.spec.limits = { maxConnectionsPerPod: 50, maxConnections: 100 };
  doc.spec.scaling = { minReplicas: 2, maxReplicas: 4, targetConnectionsPerPod: 2, scaleDownStabilizationSeconds: 0 };
  return JSON.stringify(doc);
}

/** The operator's own token (release namespace) and the app namespace's own token. */
async function tokens(rel: string, app: string): Promise<string[]> {
  const read = async (name: string, namespace: string) => (await kube().core.readNamespacedSecret({ name, namespace })).data?.token ?? "";
  return [await read(`${RELEASE}-admin-token`, rel), await read("connmeter-admin-token", app)];
}

/** Both operator pods' logs (current containers), prefixed with the pod name. */
function operatorLogs(ns: string): string {
  return kubectl("logs", "-n", ns, "-l", `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=operator`, "--prefix", "--tail=-1");
}

/**
 * Operator log lines that report a refused API call. Only the message is searched: a line's
 * pod-name prefix and its timestamp (`…T13:30:43.403Z`) may contain "403" by chance.
 */
function forbiddenLines(logs: string): string[] {
  return logs.split("\n").filter((l) => /\bforbidden\b|\b403\b/i.test(l.replace(/^\[pod\/[^\]]+\]\s*/, "").replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z\s*/, "")));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const sockets: Socket[] = [];
let rel = "";
let app = "";
/** The example app's first pods: they hold every client socket. */
let busy: string[] = [];

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));
release.onCleanup(() => {
  for (const s of sockets.splice(0)) s.disconnect();
});

describe.skipIf(skipAll)("the connmeter Helm chart on the local cluster", () => {
  it("renders manifests the API server accepts in a server-side dry run: defaults, a watched namespace, one replica, the dashboard, the examples", async () => {
    const ns = await createNamespace("chart-dry");
    const variants: string[][] = [
      [],
      ["--set", `operator.watchNamespace=${ns},adminToken.extraNamespaces={${ns}}`],
      ["--set", "operator.leaderElect=false,operator.replicas=1,adminToken.existingSecret=mine,metricsService.enabled=false"],
      // The Prometheus Operator's kinds are not served here; the ConfigMap is core.
      ["--set", "grafanaDashboard.enabled=true"],
    ];
    for (const extra of variants) {
      const text = helmK(["template", RELEASE, CHART_DIR, "--namespace", ns, "--include-crds", ...extra]);
      const out = kubectlWith(inject("kubeconfig"), ["apply", "--dry-run=server", "-f", "-"], text);
      expect(out, extra.join(" ")).toContain(`deployment.apps/${RELEASE}-operator created (server dry run)`);
      expect(out).toMatch(/customresourcedefinition.apiextensions.k8s.io\/connectionpolicies.connmeter.io (unchanged|configured|created) \(server dry run\)/);
    }
    const examples = ["demo-app.yaml", "connectionpolicy.yaml"].map((f) => readFileSync(join(CHART_DIR, "examples", f), "utf8")).join("\n---\n");
    expect(kubectlWith(inject("kubeconfig"), ["apply", "--dry-run=server", "-n", ns, "-f", "-"], examples)).toMatch(/connectionpolicy.connmeter.io\/chat created \(server dry run\)/);
  });

  it("installs with helm; the chart's operator, under only the chart's ClusterRole, meters the example app and scales it on connections", async () => {
    const t0 = Date.now();
    // :dev is what the image builds of issue 8 tag (the local cluster ignores tags). The default,
    // cluster-wide RBAC; --namespace only keeps this operator off other test runs' policies.
    const operators = await release.install();
    rel = release.namespace;
    app = release.appNamespace;
    console.log(`e2e chart: helm install --wait (and 2 operator pods Ready) took ${Date.now() - t0} ms`);
    // The operator runs as the chart's ServiceAccount, which holds no other binding.
    for (const p of operators) expect(p.spec?.serviceAccountName).toBe(RELEASE);
    expect(kubectl("get", "clusterrolebinding", `${RELEASE}-operator`, "-o", "jsonpath={.roleRef.kind}/{.roleRef.name} {.subjects[0].name}")).toBe(`ClusterRole/${RELEASE}-operator ${RELEASE}`);
    const lease = await waitFor("the chart's Lease to get a holder", async () => {
      const out = JSON.parse(kubectl("get", "lease", "connmeter-operator", "-n", rel, "-o", "json")) as { spec?: { holderIdentity?: string } };
      return out.spec?.holderIdentity || undefined;
    }, 30_000);
    expect(operators.map((p) => p.metadata!.name!).some((n) => lease.startsWith(`${n}_`))).toBe(true);

    await applyYaml(app, readFileSync(join(CHART_DIR, "examples/demo-app.yaml"), "utf8").replaceAll(":0.1.0", ":dev"));
    const pods = await waitForPodsReady(app, "app=chat", 2, 90_000);
    busy = pods.map((p) => p.metadata!.name!);
    await applyYaml(app, policy());

    // 6 clients, 3 per pod, each in room:lobby: desired = ceil(6 / 2) = 3.
    for (let i = 0; i < 6; i++) {
      const pod = pods[i % 2]!;
      const socket = phoenixSocket(`http://${pod.status!.podIP}:4001`);
      sockets.push(socket);
      await connected(socket);
      await new Promise<void>((resolve, reject) => {
        socket.channel("room:lobby", {}).join(10_000).receive("ok", () => resolve()).receive("error", (r: unknown) => reject(new Error(JSON.stringify(r))));
      });
    }
    const explain = async () => `${await describeNamespace(app)}\n${await describeNamespace(rel)}\n${operatorLogs(rel).slice(-4000)}`;
    const row = await waitFor("kubectl get connpol to show 6 connections and 6 channels", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.CONNECTIONS === "6" && r.CHANNELS === "6" ? r : undefined;
    }, 30_000, { explain });
    expect(row).toMatchObject({ NAME: "chat", TARGET: "chat" });
    const scaled = Date.now();
    await waitForReplicas(app, "chat", 3, 90_000);
    console.log(`e2e chart: scaled 2 -> 3 ${Date.now() - scaled} ms after kubectl get connpol showed 6 connections`);

    // The token from the chart's Secret reached both ends: the sidecars took the pushed limits.
    for (const p of pods) {
      const metrics = await (await fetch(`http://${p.status!.podIP}:9090/metrics`)).text();
      expect(metrics).toMatch(/^connmeter_config_pushed 1$/m);
      expect(metrics).toMatch(/^connmeter_max_connections 50$/m);
    }
    // events.k8s.io: the operator's Event about it.
    await waitFor("a ScaledUp Event", async () => {
      const list = JSON.parse(kubectl("get", "events.v1.events.k8s.io", "-n", app, "-o", "json")) as { items: { reason?: string; regarding?: { kind?: string } }[] };
      return list.items.some((e) => e.reason === "ScaledUp" && e.regarding?.kind === "ConnectionPolicy");
    }, 15_000);
    const logs = operatorLogs(rel);
    expect(logs).toMatch(/leading: reconciling ConnectionPolicies/);
    expect(forbiddenLines(logs)).toEqual([]);
  });

  it.skipIf(noPrometheus)("answers every dashboard panel's query from a real Prometheus scraping the sidecars and the operator", async () => {
    const sidecars = await listPods(app, "app=chat");
    const operators = await listPods(rel, `app.kubernetes.io/instance=${RELEASE}`);
    const target = (p: V1Pod, port: number, namespace: string) => ({ targets: [`${p.status!.podIP}:${port}`], labels: { namespace, pod: p.metadata!.name!, node: p.spec!.nodeName! } });
    const config = {
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      scrape_configs: [
        { job_name: "connmeter-sidecar", static_configs: sidecars.map((p) => target(p, 9090, app)) },
        // As the chart's ServiceMonitor does: the operator's own namespace label wins.
        { job_name: "connmeter-operator", honor_labels: true, static_configs: operators.map((p) => target(p, 8080, rel)) },
      ],
    };
    const dir = mkdtempSync(join(tmpdir(), "connmeter-prometheus-"));
    writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config));
    const port = await freePort();
    let child: ChildProcess | undefined;
    let out = "";
    try {
      child = spawn(findPrometheus().path!, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
      child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
      const query = async (expr: string): Promise<unknown[]> => {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
        const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
        if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
        return body.data!.result;
      };
      await waitFor("Prometheus to scrape every target for 8 s", async () => {
        const up = (await query("count_over_time(up[30s]) >= 8 and up == 1")) as unknown[];
        return up.length === sidecars.length + operators.length;
      }, 60_000, { explain: async () => out.slice(-3000) });
      const substitute = (e: string) => e
        .replace(/^label_values\((.*), \w+\)$/, "$1")
        .replaceAll("$__rate_interval", "10s").replaceAll("$__range", "1m")
        .replaceAll("$namespace", ".*").replaceAll("$policy", ".*").replaceAll("$cost_per_connection_hour", "1");
      const empty: string[] = [];
      const byPanel = new Map<string, number>();
      for (const { title, expr } of dashboardExprs()) {
        const n = (await query(substitute(expr))).length;
        byPanel.set(title, (byPanel.get(title) ?? 0) + n);
      }
      for (const [title, n] of byPanel) if (n === 0) empty.push(title);
      console.log(`e2e chart: ${byPanel.size} dashboard panels/variables queried, series per panel: ${JSON.stringify(Object.fromEntries(byPanel))}`);
      expect(empty).toEqual([]);
    } finally {
      child?.kill("SIGTERM");
      if (child && child.exitCode === null) await new Promise((r) => child!.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("upgrades with helm to a watched namespace: the admin token and the policies stay, RBAC becomes a Role, the new operator pods keep metering and scale down keeping the busy pods", async () => {
    const before = await tokens(rel, app);
    expect(before[0]).toBeTruthy();
    expect(before[1]).toBeTruthy();
    // Per-namespace tokens: the app's opens only its own sidecars.
    expect(before[1]).not.toBe(before[0]);
    const oldPods = (await listPods(rel, `app.kubernetes.io/instance=${RELEASE}`)).map((p) => p.metadata!.name!).sort();
    helmK(["upgrade", RELEASE, CHART_DIR, "--namespace", rel, "--reuse-values", "--wait", "--timeout", "180s",
      "--set", `operator.watchNamespace=${app},operator.extraArgs=null,operator.concurrentReconciles=2`]);
    // Cluster-scoped, whatever the scope: only the injector's (issue 16): its label on that one namespace, its webhook configuration's caBundle.
    expect(kubectl("get", "clusterroles,clusterrolebindings", "-l", `app.kubernetes.io/instance=${RELEASE}`, "-o", "name").trim().split("\n").sort())
      .toEqual([`clusterrole.rbac.authorization.k8s.io/${RELEASE}-injector`, `clusterrolebinding.rbac.authorization.k8s.io/${RELEASE}-injector`]);
    expect(kubectl("get", "clusterrole", `${RELEASE}-injector`, "-o", "jsonpath={.rules[0].resourceNames}")).toBe(`["${app}"]`);
    expect(kubectl("get", "role,rolebinding", "-n", app, "-l", `app.kubernetes.io/instance=${RELEASE}`, "-o", "name").trim().split("\n").sort())
      .toEqual([`role.rbac.authorization.k8s.io/${RELEASE}-operator`, `rolebinding.rbac.authorization.k8s.io/${RELEASE}-operator`]);
    expect(await tokens(rel, app)).toEqual(before);
    const newPods = await waitFor("the operator pods to be replaced", async () => {
      const pods = await listPods(rel, `app.kubernetes.io/instance=${RELEASE}`);
      const names = pods.map((p) => p.metadata!.name!).sort();
      return names.length === 2 && names.every((n) => !oldPods.includes(n)) ? pods : undefined;
    }, 120_000, { explain: () => describeNamespace(rel) });
    expect(newPods).toHaveLength(2);
    expect(connpolRow(inject("kubeconfig"), app)).toMatchObject({ NAME: "chat" });
    // The new leader acts: two sockets close, the status follows.
    for (const s of sockets.splice(0, 2)) s.disconnect();
    await waitFor("kubectl get connpol to show 4 connections after the upgrade", async () => connpolRow(inject("kubeconfig"), app).CONNECTIONS === "4", 60_000, {
      explain: async () => `${JSON.stringify(connpolRow(inject("kubeconfig"), app))}\n${operatorLogs(rel).slice(-3000)}`,
    });
    // 4 connections / 2 per pod = 2 replicas: deletion costs on the pods, then the scale patch;
    // the pod without connections (the one added by the scale-up) goes.
    await waitForReplicas(app, "chat", 2, 90_000);
    const left = (await listPods(app, "app=chat")).map((p) => p.metadata!.name!).sort();
    expect(left.every((n) => busy.includes(n))).toBe(true);
    await waitFor("kubectl get connpol to show 2 replicas", async () => connpolRow(inject("kubeconfig"), app).REPLICAS === "2", 3 * INTERVAL_S * 1000);
    expect(forbiddenLines(operatorLogs(rel))).toEqual([]);
  });

  it("uninstalls with helm: nothing of the release is left but the CRD, the user's policies and the app namespace's token Secret", async () => {
    release.uninstall(120);
    const selector = `app.kubernetes.io/instance=${RELEASE}`;
    const left = (kinds: string, ns?: string) => kubectl("get", kinds, ...(ns ? ["-n", ns] : []), "-l", selector, "-o", "name").trim();
    const namespaced = "deployments,replicasets,services,secrets,serviceaccounts,roles,rolebindings,leases,poddisruptionbudgets,configmaps";
    await waitFor("the operator pods to be gone", async () => (await listPods(rel, selector)).length === 0 && left("pods", rel) === "", 60_000);
    expect(left(namespaced, rel)).toBe("");
    // Kept on purpose (helm.sh/resource-policy: keep): the app's pods read it, and a reinstall reuses it.
    expect(left(namespaced, app)).toBe("secret/connmeter-admin-token");
    expect(left("clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings,mutatingwebhookconfigurations")).toBe("");
    expect(kubectl("get", "leases", "-n", rel, "-o", "name").trim()).toBe("");
    expect(kubectl("get", "crd", "connectionpolicies.connmeter.io", "-o", "name").trim()).toBe("customresourcedefinition.apiextensions.k8s.io/connectionpolicies.connmeter.io");
    expect(kubectl("get", "connpol", "-n", app, "-o", "name").trim()).toBe("connectionpolicy.connmeter.io/chat");
    // The pre-delete hook took back what the operator left on them: its finalizer, its deletion costs.
    expect(kubectl("get", "connpol", "chat", "-n", app, "-o", "jsonpath={.metadata.finalizers}")).not.toContain("connmeter.io/cleanup");
    expect(kubectl("get", "pods", "-n", app, "-o", "jsonpath={.items[*].metadata.annotations.connmeter\\.io/pod-deletion-cost-by}").trim()).toBe("");
    expect(left("jobs", rel)).toBe("");
  });
});
