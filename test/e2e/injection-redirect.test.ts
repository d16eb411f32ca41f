// Redirect mode end to end (issue 16), on kind: a Service with a NUMERIC targetPort, which no
// port name can take over. The chart's defaults offer redirect mode with its own init image
// (connmeter/init: Debian's iptables, docker/Dockerfile's `init` target); the namespace is
// labelled connmeter.io/inject=enabled, the policy asks for spec.injection.mode: redirect, and a
// second Deployment asks with the pod label connmeter.io/inject-mode=redirect. Checked: the init
// container's nat rules send the Service's traffic (and callers of the pod IP and the app's port)
// to the sidecar, official phoenix clients are counted exactly, and the app's probes reach the
// app itself: a pod whose app does not listen on its port stays unready, although the sidecar
// answers that port (a TCP probe left on it would always pass: Istio's reason for its rewrite).
//
// Kind only. The local cluster's node agent runs every container as a process of one host user
// with no image filesystem: no iptables in the pod, and no per-container UID for `--uid-owner` to
// tell the sidecar's connections from the app's, so the rules could not be applied there.
import { connect as netConnect } from "node:net";
import type { Socket } from "phoenix";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { onKind } from "../env/e2e-cluster.js";
import { applyYaml, describeNamespace, isPodReady, kube, kubectl, listPods, requireBuilt, useHelmRelease, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { connpolRow, findHelm, skipWithoutTool } from "../env/helm.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";

const skipAll = skipWithoutTool("redirect mode e2e (test/e2e/injection-redirect.test.ts)", findHelm());
if (!onKind()) {
  console.warn("\n!!! SKIPPED: redirect mode e2e (test/e2e/injection-redirect.test.ts): kind only: the local node agent runs containers as host processes of one user with no image, so neither iptables in the pod's netns nor a sidecar UID for --uid-owner exist there\n");
}
const release = useHelmRelease("redir");
const RELEASE = release.name;

/** The app's port is a number everywhere: containerPort, probes, the Service's targetPort. */
const APP = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: chat, labels: {app: chat}}
spec:
  replicas: 2
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec:
      containers:
        - name: app
          image: connmeter/demo-app:dev
          args: ["--listen", "0.0.0.0:4000"]
          ports: [{containerPort: 4000}]
          readinessProbe: {httpGet: {path: /healthz, port: 4000}, periodSeconds: 2}
          livenessProbe: {tcpSocket: {port: 4000}, periodSeconds: 5}
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: chat}
spec:
  selector: {app: chat}
  ports: [{name: web, port: 80, targetPort: 4000}]
---
# Declares port 4000 and probes it by TCP, but the app listens on 4010: it must never be Ready.
apiVersion: apps/v1
kind: Deployment
metadata: {name: deaf, labels: {app: deaf}}
spec:
  replicas: 1
  selector: {matchLabels: {app: deaf}}
  template:
    metadata: {labels: {app: deaf, connmeter.io/inject-mode: redirect}}
    spec:
      containers:
        - name: app
          image: connmeter/demo-app:dev
          args: ["--listen", "0.0.0.0:4010"]
          ports: [{containerPort: 4000}]
          readinessProbe: {tcpSocket: {port: 4000}, periodSeconds: 2}
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
`;

const POLICY = JSON.stringify({
  apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy", metadata: { name: "chat" },
  spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: 2, topics: [{ match: "room:*" }], injection: { mode: "redirect" } },
});

async function joinClients(into: Socket[], n: number, baseUrl: (i: number) => string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const socket = phoenixSocket(baseUrl(i));
    into.push(socket);
    await connected(socket);
    await new Promise<void>((resolve, reject) => {
      socket.channel(`room:${into.length}`, {}).join(10_000).receive("ok", () => resolve()).receive("error", (r: unknown) => reject(new Error(JSON.stringify(r))));
    });
  }
}

/** Whether a TCP connection to host:port is accepted. */
function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.setTimeout(5_000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** What the app itself counts (its /count on loopback, from inside the pod): the sidecars' upstream sockets. */
function appWebsockets(ns: string, pod: string): number {
  return Number(kubectl("exec", "-n", ns, pod, "-c", "app", "--", "node", "-e",
    "fetch('http://127.0.0.1:4000/count').then((r) => r.json()).then((b) => console.log(b.websocket_connections))").trim());
}

const sockets: Socket[] = [];
let app = "";
let explain: () => Promise<string> = async () => "";

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));
release.onCleanup(() => {
  for (const s of sockets.splice(0)) s.disconnect();
});

describe.skipIf(skipAll || !onKind())("redirect mode: iptables init container for a numeric targetPort (kind)", () => {
  it("injects the init container and the sidecar, keeps the app's port, rewrites its probes to the probe port, and the pods get Ready through it", async () => {
    await release.install();
    const rel = release.namespace;
    app = release.appNamespace;
    const logs = () => kubectl("logs", "-n", rel, "-l", `app.kubernetes.io/instance=${RELEASE}`, "--prefix", "--tail=200");
    explain = async () => `${await describeNamespace(app)}\n${logs().slice(-4000)}`;
    kubectl("label", "namespace", app, "connmeter.io/inject=enabled");
    await applyYaml(app, POLICY);
    await applyYaml(app, APP);

    const pods = await waitForPodsReady(app, "app=chat", 2, 120_000).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await explain()}`);
    });
    for (const p of pods) {
      expect(p.spec!.initContainers!.map((c) => c.name)).toEqual(["connmeter-init", "connmeter"]);
      const init = p.spec!.initContainers![0]!;
      expect(init.image).toMatch(/^connmeter\/init:/);
      expect(init.securityContext?.capabilities).toEqual({ add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] });
      const initStatus = p.status!.initContainerStatuses!.find((c) => c.name === "connmeter-init")!;
      expect(initStatus.state?.terminated?.exitCode).toBe(0);
      expect(p.spec!.initContainers![1]!.securityContext?.runAsUser).toBe(2102);
      const c = p.spec!.containers[0]!;
      expect(c.ports).toEqual([{ containerPort: 4000, protocol: "TCP" }]);
      expect(c.readinessProbe?.httpGet?.port).toBe(4002);
      expect(c.livenessProbe?.tcpSocket?.port).toBe(4002);
      expect(p.metadata?.annotations?.["connmeter.io/injected"]).toContain("redirect: tcp 4000 -> sidecar 4001");
    }
    const row = await waitFor("kubectl get connpol to show 2 pods, all injected", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.PODS === "2" && r.READY === "True" ? r : undefined;
    }, 40_000, { explain });
    expect(row.REASON).toBe("Metered");
  });

  it("counts official phoenix clients through the Service's ClusterIP (targetPort 4000) and straight to a pod's port 4000 exactly: both are redirected to the sidecar", async () => {
    const clusterIP = kubectl("get", "service", "chat", "-n", app, "-o", "jsonpath={.spec.clusterIP}");
    const pods = await listPods(app, "app=chat");
    await joinClients(sockets, 6, () => `http://${clusterIP}:80`);
    await joinClients(sockets, 2, (i) => `http://${pods[i % 2]!.status!.podIP}:4000`);
    const row = await waitFor("kubectl get connpol to show 8 connections and 8 channels", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.CONNECTIONS === "8" && r.CHANNELS === "8" ? r : undefined;
    }, 40_000, { explain });
    expect(row).toMatchObject({ NAME: "chat", PODS: "2" });
    // The app saw exactly these sockets, each from its sidecar: nothing went around it.
    expect(pods.map((p) => appWebsockets(app, p.metadata!.name!)).reduce((a, b) => a + b, 0)).toBe(8);
    for (const s of sockets.splice(0, 3)) s.disconnect();
    await waitFor("kubectl get connpol to show 5 connections", async () => connpolRow(inject("kubeconfig"), app).CONNECTIONS === "5", 40_000, { explain });
  });

  it("probes the app itself: a pod whose app does not listen on its declared port stays unready, although the sidecar answers that port", async () => {
    const deaf = await waitFor("the deaf pod's sidecar to be Ready and its readiness probe to have failed", async () => {
      const [p] = await listPods(app, "app=deaf");
      const sidecarReady = p?.status?.initContainerStatuses?.find((c) => c.name === "connmeter")?.ready === true;
      if (!p || !sidecarReady) return undefined;
      const events = await kube().core.listNamespacedEvent({ namespace: app, fieldSelector: `involvedObject.name=${p.metadata!.name}` });
      return events.items.some((e) => e.reason === "Unhealthy" && /Readiness probe failed/.test(e.message ?? "")) ? p : undefined;
    }, 120_000, { explain });
    const fresh = (await listPods(app, "app=deaf")).find((p) => p.metadata!.name === deaf.metadata!.name)!;
    expect(fresh.spec!.containers[0]!.readinessProbe?.tcpSocket?.port).toBe(4002);
    expect(isPodReady(fresh)).toBe(false);
    expect(fresh.status!.containerStatuses!.find((c) => c.name === "app")!.ready).toBe(false);
    const events = await kube().core.listNamespacedEvent({ namespace: app, fieldSelector: `involvedObject.name=${fresh.metadata!.name}` });
    const failed = events.items.filter((e) => e.reason === "Unhealthy").map((e) => e.message ?? "");
    expect(failed.some((m) => m.includes(":4002"))).toBe(true);
    // Its port 4000 is answered (by the sidecar, redirected): an unrewritten TCP probe would have passed.
    expect(await tcpAccepts(fresh.status!.podIP!, 4000)).toBe(true);
    // Meanwhile the chat pods' rewritten liveness probe has kept passing: no restart.
    for (const p of await listPods(app, "app=chat")) {
      expect(p.status!.containerStatuses!.find((c) => c.name === "app")!.restartCount).toBe(0);
      expect(isPodReady(p)).toBe(true);
    }
  });
});
