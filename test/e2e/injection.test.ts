// Sidecar injection (issue 16) as a user meets it: an app whose Deployment and Service know
// nothing of connmeter (targetPort: http, no sidecar); the chart installed with its defaults
// (the webhook on, its certificate self-managed by the operator); a ConnectionPolicy applied.
// The pods that ran before show as PodsWithoutSidecar; `kubectl rollout restart` brings pods
// with the native sidecar and the port taken over by name; official phoenix clients are
// counted exactly in `kubectl get connpol`; the app's probes still pass; with the webhook
// unreachable (failurePolicy Ignore) a new pod still starts and the status says it is not
// metered; a forced rotation of the webhook's self-managed certificate fails no admission.
// The tests of this file run in order and share one release.
//
// Local cluster: kube-apiserver reaches the webhook Service through its endpoints
// (--enable-aggregator-routing, test/env/component-flags.ts); clients connect to pod IPs (no
// kube-proxy). On kind the same holds through the real Service dataplane, and one more test
// sends clients through the Service's ClusterIP (the host routes the Service range to the
// control plane: test/kind/cluster.sh).
import type { V1Pod } from "@kubernetes/client-node";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import type { Socket } from "phoenix";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { pemCertificates } from "../../operator/webhook/certs.js";
import { onKind } from "../env/e2e-cluster.js";
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

/** `n` official phoenix clients, each joined to `<room>:<i>` (the demo app serves room:* only), through `baseUrl(i)`. */
async function joinClients(into: Socket[], n: number, baseUrl: (i: number) => string, room: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const socket = phoenixSocket(baseUrl(i));
    into.push(socket);
    await connected(socket);
    await new Promise<void>((resolve, reject) => {
      socket.channel(`${room}:${i}`, {}).join(10_000).receive("ok", () => resolve()).receive("error", (r: unknown) => reject(new Error(JSON.stringify(r))));
    });
  }
}

/** The certificate a TLS server at host:port presents (no verification: only which one it is). */
function servedCertificate(host: string, port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, rejectUnauthorized: false, servername: "connmeter-webhook" }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.destroy();
      if (cert) resolve(cert);
      else reject(new Error(`${host}:${port} presented no certificate`));
    });
    socket.once("error", reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error(`${host}:${port}: TLS handshake timed out`)));
  });
}

const sockets: Socket[] = [];
let rel = "";
let app = "";
let explain: () => Promise<string> = async () => "";
/** The pod started while the webhook was unreachable (no sidecar). */
let uninjected = "";

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
    await joinClients(sockets, 5, (i) => `http://${pods[i % 2]!.status!.podIP}:4001`, "room");
    const row = await waitFor("kubectl get connpol to show 5 connections, 5 channels, READY True", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.CONNECTIONS === "5" && r.CHANNELS === "5" && r.READY === "True" ? r : undefined;
    }, 40_000, { explain });
    expect(row).toMatchObject({ REASON: "Metered", PODS: "2" });
    const status = await policyStatus(app);
    expect(status.podsWithoutSidecar).toBeUndefined();
    expect(status.conditions!.find((c) => c.type === "Injected")).toMatchObject({ status: "True", reason: "AllPodsInjected" });
  });

  it.skipIf(!onKind())("counts phoenix clients that come through the Service's ClusterIP (targetPort: http, no edit) exactly, on top of the others (kind)", async () => {
    const clusterIP = kubectl("get", "service", "chat", "-n", app, "-o", "jsonpath={.spec.clusterIP}");
    expect(clusterIP).toMatch(/^198\.19\./);
    // kube-proxy picks the pod; the port is the Service's (80), its targetPort the sidecar's by name.
    const viaService: Socket[] = [];
    try {
      await joinClients(viaService, 6, () => `http://${clusterIP}:80`, "room");
      const row = await waitFor("kubectl get connpol to show 11 connections and 11 channels", async () => {
        const r = connpolRow(inject("kubeconfig"), app);
        return r.CONNECTIONS === "11" && r.CHANNELS === "11" ? r : undefined;
      }, 40_000, { explain });
      expect(row).toMatchObject({ REASON: "Metered", READY: "True" });
      // Per pod, the status adds up to the same 11: every socket went through a sidecar.
      const perPod = (await policyStatus(app) as { pods?: { connections: number }[] }).pods ?? [];
      expect(perPod.reduce((n, p) => n + p.connections, 0)).toBe(11);
      // The app's own count agrees: its sockets are the sidecars' upstream connections.
      const pods = await listPods(app, "app=chat");
      let appSockets = 0;
      for (const p of pods) {
        const out = kubectl("exec", "-n", app, p.metadata!.name!, "-c", "app", "--", "node", "-e",
          "fetch('http://127.0.0.1:4000/count').then((r) => r.json()).then((b) => console.log(b.websocket_connections))");
        appSockets += Number(out.trim());
      }
      expect(appSockets).toBe(11);
    } finally {
      for (const s of viaService) s.disconnect();
    }
    await waitFor("kubectl get connpol to show 5 connections again", async () => connpolRow(inject("kubeconfig"), app).CONNECTIONS === "5", 40_000, { explain });
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
      uninjected = fresh.metadata!.name!;
      // The injected pods are still metered meanwhile.
      expect(row.CONNECTIONS).toBe("5");
    } finally {
      kubectl("patch", "mutatingwebhookconfiguration", config, "--type=json", "-p", JSON.stringify([
        { op: "replace", path: "/webhooks/0/clientConfig/service/port", value: 443 },
        { op: "replace", path: "/webhooks/1/clientConfig/service/port", value: 443 },
      ]));
    }
  });

  it("rotates the webhook's certificate when its CA key is lost: pods admitted during and after the rotation are all injected, the caBundle holds the new CA beside the old, both replicas serve the new certificate, the operator stays healthy and the policy keeps updating", async () => {
    const secretName = `${RELEASE}-webhook-tls`;
    const config = `${RELEASE}-injector`;
    const readSecret = async () => {
      const d = (await kube().core.readNamespacedSecret({ name: secretName, namespace: rel })).data ?? {};
      return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")])) as Record<string, string>;
    };
    const caBundle = () => Buffer.from(kubectl("get", "mutatingwebhookconfiguration", config, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}"), "base64").toString("utf8");
    /** Whether the PEM bundle holds the certificate `pem` (compared as DER, not as text). */
    const holds = (bundle: string, pem: string) => pemCertificates(bundle).some((c) => c.raw.equals(new X509Certificate(pem).raw));
    const operators = await listPods(rel, `app.kubernetes.io/instance=${RELEASE}`);
    expect(operators).toHaveLength(2);
    const before = await readSecret();
    expect(holds(caBundle(), before["ca.crt"]!)).toBe(true);

    // A pod as its Deployment makes it, admitted in a server-side dry run (the whole admission
    // chain, webhook included; nothing is stored): injected or not, by the mutated spec.
    const template = (await kube().apps.readNamespacedDeployment({ name: "chat", namespace: app })).spec!.template;
    const admitted: boolean[] = [];
    const admit = async () => {
      const pod = await kube().core.createNamespacedPod({ namespace: app, dryRun: "All", body: { metadata: { generateName: "chat-rotation-", labels: template.metadata!.labels }, spec: template.spec! } });
      admitted.push(pod.spec?.initContainers?.some((c) => c.name === "connmeter") ?? false);
    };
    await admit();

    // Losing the CA key is what forces a rotation (README: "Certificate"): the leader makes a new
    // CA, adds it to the caBundle beside the old one, then switches the serving certificate.
    kubectl("patch", "secret", secretName, "-n", rel, "--type=json", "-p", JSON.stringify([{ op: "remove", path: "/data/ca.key" }]));
    const after = await waitFor("the rotation: a new CA and serving certificate in the Secret, the caBundle trusting it, both replicas serving it", async () => {
      await admit();
      const now = await readSecret();
      if (!now["ca.key"] || now["ca.crt"] === before["ca.crt"] || now["tls.crt"] === before["tls.crt"]) return undefined;
      if (!holds(caBundle(), now["ca.crt"]!)) return undefined;
      const want = new X509Certificate(now["tls.crt"]!);
      const served = await Promise.all(operators.map((p) => servedCertificate(p.status!.podIP!, 9443)));
      return served.every((c) => c.raw.equals(want.raw)) ? now : undefined;
    }, 180_000, { intervalMs: 2_000, explain });
    await admit();

    // Rotations overlap: the old CA stays trusted beside the new one, and the new certificate is the new CA's.
    const bundle = caBundle();
    expect(holds(bundle, after["ca.crt"]!)).toBe(true);
    expect(holds(bundle, before["ca.crt"]!)).toBe(true);
    expect(kubectl("get", "mutatingwebhookconfiguration", config, "-o", "jsonpath={.webhooks[1].clientConfig.caBundle}")).toBe(Buffer.from(bundle).toString("base64"));
    expect(new X509Certificate(after["tls.crt"]!).checkIssued(new X509Certificate(after["ca.crt"]!))).toBe(true);
    expect(admitted.length).toBeGreaterThanOrEqual(3);
    expect(admitted.filter((ok) => !ok)).toEqual([]);
    console.log(`e2e injection: ${admitted.length} pods admitted across the certificate rotation, all injected`);

    // A real pod after the rotation: the one started while the webhook was unreachable is replaced, with the sidecar.
    await kube().core.deleteNamespacedPod({ name: uninjected, namespace: app });
    await waitFor("3 ready pods, all injected", async () => {
      const list = (await listPods(app, "app=chat")).filter((p) => !p.metadata?.deletionTimestamp);
      return list.length === 3 && list.every((p) => isPodReady(p) && p.spec?.initContainers?.some((c) => c.name === "connmeter")) || undefined;
    }, 120_000, { explain });
    // The invariants: the operator answers /healthz on both replicas, and the policy keeps updating.
    for (const p of operators) expect((await fetch(`http://${p.status!.podIP}:8081/healthz`)).status).toBe(200);
    const row = await waitFor("kubectl get connpol to show READY True (AllPodsInjected) and 3 pods", async () => {
      const r = connpolRow(inject("kubeconfig"), app);
      return r.READY === "True" && r.PODS === "3" ? r : undefined;
    }, 40_000, { explain });
    expect(row).toMatchObject({ CONNECTIONS: "5", REASON: "Metered" });
    expect((await policyStatus(app)).conditions!.find((c) => c.type === "Injected")).toMatchObject({ status: "True", reason: "AllPodsInjected" });
    for (const s of sockets.splice(0, 2)) s.disconnect();
    await waitFor("kubectl get connpol to follow two closed sockets", async () => connpolRow(inject("kubeconfig"), app).CONNECTIONS === "3", 40_000, { explain });
    const logs = kubectl("logs", "-n", rel, "-l", `app.kubernetes.io/instance=${RELEASE}`, "--prefix", "--tail=-1");
    expect(logs).toMatch(/webhook certificate: new CA \(CA key does not match\)/);
    for (const p of operators) expect(logs).toMatch(new RegExp(`\\[pod/${p.metadata!.name}/[^\\]]+\\] .*webhook: serving a new certificate`));
  });
});
