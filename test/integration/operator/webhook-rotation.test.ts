// A CA rotation under load, over real HTTPS on loopback: the keeper (leader) rotates the CA
// while a client that trusts exactly the webhook configuration's caBundle, as the API server
// does, sends AdmissionReviews without pause. Not one may fail: the bundle carries old and new
// CA before the served certificate switches.
import { request } from "node:https";
import { describe, expect, it } from "vitest";
import { POLICY_PATH } from "../../../operator/webhook/admission.js";
import { CA_VALIDITY_MS, pemCertificates, type TlsData } from "../../../operator/webhook/certs.js";
import { TlsKeeper } from "../../../operator/webhook/tls-keeper.js";
import { WebhookServer } from "../../../operator/webhook/webhook-server.js";

const review = JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { uid: "u", kind: { kind: "Pod" }, operation: "CREATE", namespace: "chat", object: { metadata: {}, spec: { containers: [{ name: "app" }] } } } });

function admit(port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", servername: "localhost", port, path: POLICY_PATH, method: "POST", ca, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(review);
  });
}

describe("webhook certificate rotation", () => {
  it("fails no admission while the CA rotates (bundle first, serving certificate once trusted)", async () => {
    // The CA was made years ago (two thirds of its life ago), the serving certificate renewed since
    // by the same keeper: every certificate is valid for the real clock the TLS client checks.
    const DAY = 86_400_000;
    const real = Date.now();
    // Due (a third of its life left) between the last tick before the load and the first under it.
    let now = real - Math.floor((2 * CA_VALIDITY_MS) / 3) - 30_000;
    const secret: { data: TlsData; resourceVersion: string } = { data: {}, resourceVersion: "1" };
    let trusted: string | undefined;
    const server = new WebhookServer({ context: () => undefined, log: () => {} });
    let port = 0;
    const keeper = new TlsKeeper({
      store: { read: async () => ({ ...secret }), write: async (data) => void Object.assign(secret, { data, resourceVersion: String(Number(secret.resourceVersion) + 1) }) },
      manage: { bundle: { read: async () => trusted, write: async (b) => void (trusted = b) }, dnsNames: ["localhost"] },
      isLeader: () => true, clock: () => now, log: () => {},
      onCertificate: (c, k) => void server.setCertificate(c, k),
    });
    for (; now < real - 200 * DAY; now += 200 * DAY) await keeper.tick();
    now = real - 60_000;
    await keeper.tick();
    port = (await server.listen("127.0.0.1", 0)).port;
    const firstCa = secret.data.caCert;

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const load = (async () => {
      while (!stop) {
        // The API server trusts what the configuration holds at the moment of the call.
        try {
          const status = await admit(port, trusted!);
          if (status === 200) ok++;
          else failures.push(`HTTP ${status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    try {
      // The CA is due: the leader rotates, in its two steps, under load.
      now = real;
      for (let i = 0; i < 4; i++) {
        await keeper.tick();
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      stop = true;
      await load;
      await server.close();
    }
    expect(secret.data.caCert).not.toBe(firstCa);
    expect(pemCertificates(trusted)).toHaveLength(2);
    expect([...new Set(failures)]).toEqual([]);
    expect(ok).toBeGreaterThan(10);
  });
});
