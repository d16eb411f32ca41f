// The webhook over real HTTPS on loopback: an AdmissionReview answered with a patch, the
// certificate replaced in place (new connections verify against the new CA, no restart).
import { request } from "node:https";
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { POLICY_PATH } from "../../../operator/webhook/admission.js";
import { planTls, type TlsData } from "../../../operator/webhook/certs.js";
import { WebhookServer } from "../../../operator/webhook/webhook-server.js";

const NAMES = ["localhost"];

function post(port: number, path: string, body: string, ca: string): Promise<{ status: number; json: unknown; issuer: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", servername: "localhost", port, path, method: "POST", ca, agent: false, headers: { "content-type": "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      const peer = (res.socket as TLSSocket).getPeerX509Certificate();
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString("utf8")), issuer: peer?.fingerprint256 ?? "" }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const review = JSON.stringify({
  apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
  request: {
    uid: "abc", kind: { group: "", version: "v1", kind: "Pod" }, operation: "CREATE", namespace: "chat",
    object: { metadata: { generateName: "chat-", labels: { app: "chat" } }, spec: { containers: [{ name: "app", ports: [{ name: "http", containerPort: 4000 }] }] } },
  },
});

let server: WebhookServer | undefined;
afterEach(async () => server?.close());

describe("WebhookServer", () => {
  it("answers an AdmissionReview with a JSON patch, then serves a rotated certificate without a restart", async () => {
    const ctx = {
      policies: { get: () => undefined, list: () => [{ metadata: { name: "p", namespace: "chat" }, spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment" as const, name: "chat" } } }] },
      deployments: { get: () => ({ spec: { selector: { matchLabels: { app: "chat" } } } }), list: () => [] },
      statefulSets: { get: () => undefined, list: () => [] },
      defaults: {
        image: "connmeter/sidecar:0.1.0", listenPort: 4001, adminPort: 9090, resources: { requests: { cpu: "50m" }, limits: { memory: "256Mi" } },
        portName: "http", mode: "named-port" as const, topicGroups: [], adminTokenSecret: "connmeter-admin-token", defaultUpstreamPort: 4000,
      },
      operatorNamespace: "connmeter-system",
    };
    server = new WebhookServer({ context: () => ctx, log: () => {} });
    const first: TlsData = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: Date.now() }).next;
    server.setCertificate(first.tlsCert!, first.tlsKey!);
    const { port } = await server.listen("127.0.0.1", 0);
    expect(server.serving).toBe(true);

    const a = await post(port, POLICY_PATH, review, first.caCert!);
    expect(a.status).toBe(200);
    const resp = (a.json as { response: { uid: string; allowed: boolean; patchType: string; patch: string } }).response;
    expect(resp).toMatchObject({ uid: "abc", allowed: true, patchType: "JSONPatch" });
    const ops = JSON.parse(Buffer.from(resp.patch, "base64").toString("utf8")) as { path: string }[];
    expect(ops.map((o) => o.path)).toContain("/spec/initContainers");

    // A new CA and certificate: the same listening server serves them to the next connection.
    const second = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: Date.now() }).next;
    expect(server.setCertificate(second.tlsCert!, second.tlsKey!)).toBe(true);
    const b = await post(port, POLICY_PATH, review, second.caCert!);
    expect(b.status).toBe(200);
    expect(b.issuer).toBe(new X509Certificate(second.tlsCert!).fingerprint256);
    await expect(post(port, POLICY_PATH, review, first.caCert!)).rejects.toThrow(/self-signed|unable to verify|certificate/);
  });

  it("refuses what is not an AdmissionReview with a clear error", async () => {
    server = new WebhookServer({ context: () => undefined, log: () => {} });
    const tls = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: Date.now() }).next;
    server.setCertificate(tls.tlsCert!, tls.tlsKey!);
    const { port } = await server.listen("127.0.0.1", 0);
    expect(await post(port, POLICY_PATH, "{}", tls.caCert!)).toMatchObject({ status: 400, json: { error: "expected an admission.k8s.io/v1 AdmissionReview" } });
    expect(await post(port, "/other", review, tls.caCert!)).toMatchObject({ status: 404 });
    // Caches not synced: the pod is admitted unchanged, with a warning.
    const r = await post(port, POLICY_PATH, review, tls.caCert!);
    expect((r.json as { response: unknown }).response).toEqual({ uid: "abc", allowed: true, warnings: ["connmeter: webhook not ready, sidecar not injected"] });
  });
});
