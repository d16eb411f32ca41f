// The admission webhook's HTTPS server. Every replica serves (the Service spreads the API
// server's calls over them; the leader only manages the certificate). Endpoints:
//   POST /inject/policy, POST /inject/namespace   AdmissionReview v1 (admission.ts)
// The certificate is swapped in place (tls.Server#setSecureContext) when the Secret changes:
// new connections use the new one, open ones finish with the old, no restart.
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { NAMESPACE_PATH, POLICY_PATH, decide, parseReview, reviewResponse, type AdmissionContext, type AdmissionDecision } from "./admission.js";

/** The API server caps a request at 3 MiB; a pod larger than that never comes. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;

export interface WebhookServerOptions {
  context: () => AdmissionContext | undefined;
  onDecision?: (d: AdmissionDecision, namespace: string, ms: number) => void;
  log: (line: string) => void;
}

export class WebhookServer {
  private server: Server | undefined;
  private certPem: string | undefined;
  private pending: { cert: string; key: string } | undefined;

  constructor(private readonly opts: WebhookServerOptions) {}

  /** Whether a certificate is loaded (the replica can answer the API server). */
  get serving(): boolean {
    return this.server?.listening === true && this.certPem !== undefined;
  }

  /** Loads a certificate and key (PEM), for `listen` or in place of the one served; returns false when unchanged. */
  setCertificate(certPem: string, keyPem: string): boolean {
    if (certPem === this.certPem) return false;
    this.certPem = certPem;
    this.server?.setSecureContext({ cert: certPem, key: keyPem, minVersion: "TLSv1.2" });
    this.pending = { cert: certPem, key: keyPem };
    return true;
  }

  /** Starts listening once a certificate is loaded; resolves with the bound address. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    if (!this.pending) throw new Error("webhook: no certificate loaded yet");
    const server = createServer({ cert: this.pending.cert, key: this.pending.key, minVersion: "TLSv1.2" }, (req, res) => this.handle(req, res));
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeIdleConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "").split("?")[0]!;
    if (req.method !== "POST" || (path !== POLICY_PATH && path !== NAMESPACE_PATH)) {
      reply(res, 404, { error: `POST ${POLICY_PATH} or ${NAMESPACE_PATH} only` });
      return;
    }
    const started = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reply(res, 413, { error: `body over ${MAX_BODY_BYTES} bytes` });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (res.headersSent) return;
      const parsed = parseReview(Buffer.concat(chunks).toString("utf8"));
      if (typeof parsed === "string") {
        reply(res, 400, { error: parsed });
        return;
      }
      const ctx = this.opts.context();
      // Caches not synced yet: admit unchanged (the pod is listed as PodsWithoutSidecar later).
      const decision: AdmissionDecision = ctx ? decide(path, parsed, ctx)
        : { response: { uid: parsed.uid, allowed: true, warnings: ["connmeter: webhook not ready, sidecar not injected"] }, outcome: "skipped:not-ready" };
      reply(res, 200, reviewResponse(decision.response));
      this.opts.onDecision?.(decision, parsed.namespace ?? "", performance.now() - started);
    });
    req.on("error", () => res.destroy());
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
