// Sidecar injection (issue 16) as a user meets it: an app whose Deployment and Service know
// nothing of connmeter (targetPort: http, no sidecar); the chart installed with its defaults
// (the webhook on, its certificate self-managed by the operator); a ConnectionPolicy applied.
// The pods that ran before show as PodsWithoutSidecar; `kubectl rollout restart` brings pods
// with the native sidecar and the port taken over by name; official phoenix clients are
// counted exactly in `kubectl get connpol`; the app's probes still pass; with the webhook
// unreachable (failurePolicy Ignore) a new pod still starts and the status says it is not
// metered. The tests of this file run in order and share one release.
//
// Local cluster: kube-apiserver reaches the webhook Service through its endpoints
// (--enable-aggregator-routing, test/env/component-flags.ts); clients connect to pod IPs (no
// kube-proxy). On kind the same holds through the real Service dataplane.
import type { V1Pod } from "@kubernetes/client-node";
import type { Socket } from "phoenix";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { applyYaml, describeNamespace, isPodReady, kube, kubectl, listPods, requireBuilt, useHelmRelease, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { connpolRow, findHelm, skipWithoutTool } from "../env/helm.js";
import { connected, phoenixSocket } from "../support/phoenix-client.js";

const release = useHelmRelease("inj");
const RELEASE = release.name;
const skipAll = skipWithoutTool("injection e2e (test/e2e/injection.test.ts)", findHelm());

/** The app as its team wrote it: no sidecar, the Service targets the app's port by name, probes on that name. */
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
          ports: [{name: http, containerPort: 4000}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 2}
          livenessProbe: {tcpSocket: {port: http}, periodSeconds: 10}
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 256Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: chat, labels: {app: chat}}
spec:
  selector: {app: chat}
  ports: [{name: web, port: 80, targetPort: http}]
`;

const POLICY = JSON.stringify({
  apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy", metadata: { name: "chat" },
  spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, scrapeIntervalSeconds: 2, topics: [{ match: "room:*" }] },
});

interface Condition { type: string; status: string; reason: string; message: string }
async function policyStatus(ns: string): Promise<{ conditions?: Condition[]; podsWithoutSidecar?: string[]; connections?: number }> {
  const p = await kube().custom.getNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies", name: "chat" }) as { status?: object };
  return p.status ?? {};
}

const sockets: Socket[] = [];
let rel = "";
let app = "";
let explain: () => Promise<string> = async () => "";

beforeAll(() => requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js"));
release.onCleanup(() => {
  for (const s of sockets.splice(0)) s.disconnect();
});

describe.skipIf(skipAll)("sidecar injection by the operator's webhook", () => {
  it("lists the pods created before the policy as PodsWithoutSidecar, in kubectl get connpol and an Event", async () => {
    await release.install();
    rel = release.namespace;
    app = release.appNamespace;
    const logs = () => kubectl("logs", "-n", rel, "-l", `app.kubernetes.io/instance=${RELEASE}`, "--prefix", "--tail=200");
    explain = async () => `${await describeNamespace(app)}\n${await describeNamespace(rel)}\n${logs().slice(-6000)}`;
    await applyYaml(app, APP);
    const before = (await waitForPodsReady(app, "app=chat", 2, 90_000)).map((p) => p.metadata!.name!).sort();
    await applyYaml(app, POLICY);

    // The operator labels the namespace for the webhook's namespaceSelector.
    await waitFor("the app namespace to carry connmeter.io/has-policy=true", async () =>
      kubectl("get", "namespace", app, "-o", "jsonpath={.metadata.labels.connmeter\\.io/has-policy}") === "true" || undefined, 30_000, { explain });
    const row = await waitFor("kubectl get connpol to show PodsWithoutSidecar", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.REASON === "PodsWithoutSidecar" ? r : undefined;
    }, 30_000, { explain });
    expect(row.READY).toBe("False");
    const status = await policyStatus(app);
    expect(status.podsWithoutSidecar).toEqual(before);
    const injected = status.conditions!.find((c) => c.type === "Injected")!;
    expect(injected).toMatchObject({ status: "False", reason: "PodsWithoutSidecar" });
    expect(injected.message).toContain(`kubectl rollout restart deployment/chat -n ${app}`);
    await waitFor("a PodsWithoutSidecar Event", async () => {
      const list = JSON.parse(kubectl("get", "events.v1.events.k8s.io", "-n", app, "-o", "json")) as { items: { reason?: string }[] };
      return list.items.some((e) => e.reason === "PodsWithoutSidecar") || undefined;
    }, 20_000, { explain });
  });

  it("after kubectl rollout restart, every pod runs the native sidecar on the Service's port name, the app's probes pass, and phoenix clients are counted exactly", async () => {
    kubectl("rollout", "restart", "deployment/chat", "-n", app);
    const pods = await waitFor("2 ready pods, all injected", async () => {
      const list = (await listPods(app, "app=chat")).filter((p) => !p.metadata?.deletionTimestamp);
      return list.length === 2 && list.every((p) => isPodReady(p) && p.spec?.initContainers?.some((c) => c.name === "connmeter")) ? list : undefined;
    }, 120_000, { explain });
    for (const p of pods) {
      const sidecar = p.spec!.initContainers!.find((c) => c.name === "connmeter")!;
      expect(sidecar.restartPolicy).toBe("Always");
      expect(sidecar.ports?.map((x) => [x.name, x.containerPort])).toEqual([["http", 4001], ["connmeter-admin", 9090]]);
      expect(sidecar.resources?.limits?.memory).toBe("256Mi");
      const appC = p.spec!.containers.find((c) => c.name === "app")!;
      expect(appC.ports?.map((x) => [x.name, x.containerPort])).toEqual([["cm-http", 4000]]);
      expect(appC.readinessProbe?.httpGet?.port).toBe("cm-http");
      expect(appC.livenessProbe?.tcpSocket?.port).toBe("cm-http");
      expect(p.metadata?.annotations?.["connmeter.io/injected"]).toContain("cm-http");
    }
    // The Service's targetPort: http now resolves to the sidecar's port in its EndpointSlices.
    await waitFor("the Service's EndpointSlice to point at the sidecar's port 4001", async () => {
      const slices = JSON.parse(kubectl("get", "endpointslices", "-n", app, "-l", "kubernetes.io/service-name=chat", "-o", "json")) as { items: { ports?: { port?: number }[]; endpoints?: { addresses: string[] }[] }[] };
      const ports = slices.items.flatMap((s) => s.ports ?? []).map((x) => x.port);
      const addresses = slices.items.flatMap((s) => s.endpoints ?? []).flatMap((e) => e.addresses).sort();
      return ports.length > 0 && ports.every((x) => x === 4001) && addresses.join() === pods.map((p) => p.status!.podIP!).sort().join() || undefined;
    }, 30_000, { explain });

    // 5 official phoenix clients through the pods' takeover port, each joined to a room.
    for (let i = 0; i < 5; i++) {
      const socket = phoenixSocket(`http://${pods[i % 2]!.status!.podIP}:4001`);
      sockets.push(socket);
      await connected(socket);
      await new Promise<void>((resolve, reject) => {
        socket.channel(`room:${i}`, {}).join(10_000).receive("ok", () => resolve()).receive("error", (r: unknown) => reject(new Error(JSON.stringify(r))));
      });
    }
    const row = await waitFor("kubectl get connpol to show 5 connections, 5 channels, READY True", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.CONNECTIONS === "5" && r.CHANNELS === "5" && r.READY === "True" ? r : undefined;
    }, 40_000, { explain });
    expect(row).toMatchObject({ REASON: "Metered", PODS: "2" });
    const status = await policyStatus(app);
    expect(status.podsWithoutSidecar).toBeUndefined();
    expect(status.conditions!.find((c) => c.type === "Injected")).toMatchObject({ status: "True", reason: "AllPodsInjected" });
  });

  it("with the webhook unreachable and failurePolicy Ignore, a new pod still starts, without the sidecar, and the status says it is not metered", async () => {
    const config = `${RELEASE}-injector`;
    // Point both webhooks at a port nothing serves: every call fails, as with the operator down.
    kubectl("patch", "mutatingwebhookconfiguration", config, "--type=json", "-p", JSON.stringify([
      { op: "replace", path: "/webhooks/0/clientConfig/service/port", value: 8443 },
      { op: "replace", path: "/webhooks/1/clientConfig/service/port", value: 8443 },
    ]));
    try {
      const known = new Set((await listPods(app, "app=chat")).map((p) => p.metadata!.name!));
      kubectl("scale", "deployment/chat", "-n", app, "--replicas=3");
      const fresh: V1Pod = await waitFor("a third pod, ready", async () => (await listPods(app, "app=chat")).find((p) => !known.has(p.metadata!.name!) && isPodReady(p)), 90_000, { explain });
      expect(fresh.spec?.initContainers?.some((c) => c.name === "connmeter") ?? false).toBe(false);
      const row = await waitFor("kubectl get connpol to show PodsWithoutSidecar for it", async () => {
        const r = connpolRow(inject("kubeconfig"), app);
        return r.REASON === "PodsWithoutSidecar" ? r : undefined;
      }, 30_000, { explain });
      expect(row.READY).toBe("False");
      expect((await policyStatus(app)).podsWithoutSidecar).toEqual([fresh.metadata!.name!]);
      // The injected pods are still metered meanwhile.
      expect(row.CONNECTIONS).toBe("5");
    } finally {
      kubectl("patch", "mutatingwebhookconfiguration", config, "--type=json", "-p", JSON.stringify([
        { op: "replace", path: "/webhooks/0/clientConfig/service/port", value: 443 },
        { op: "replace", path: "/webhooks/1/clientConfig/service/port", value: 443 },
      ]));
    }
  });
});
