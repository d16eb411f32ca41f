// The operator's admin plane: two small servers, as controller-runtime has them.
//   --metrics-addr  GET /metrics   Prometheus text (operator + per-policy gauges)
//   --health-addr   GET /healthz   200 while the process runs its loops
//                   GET /readyz    200 once every informer has synced: "leader" or "standby"
//                                  (a standby is ready to take over); 503 "syncing" before
import http from "node:http";
import type { HostPort } from "../../sidecar/cli-flags.js";
import type { OperatorMetrics } from "./metrics.js";

export interface HealthSource {
  synced(): boolean;
  role(): "leader" | "standby";
}

export class OperatorAdmin {
  private readonly servers: http.Server[] = [];

  constructor(private readonly metrics: OperatorMetrics, private readonly health: HealthSource) {}

  async start(metricsAddr: HostPort, healthAddr: HostPort): Promise<{ metrics: HostPort; health: HostPort }> {
    const metrics = await this.listen(metricsAddr, async (req, res) => {
      if (req.method === "GET" && req.url?.split("?")[0] === "/metrics") {
        const text = await this.metrics.registry.metrics();
        return send(res, 200, text, this.metrics.registry.contentType);
      }
      send(res, 404, "not found: GET /metrics\n");
    });
    const health = await this.listen(healthAddr, (req, res) => {
      const path = req.url?.split("?")[0];
      if (req.method === "GET" && path === "/healthz") return send(res, 200, "ok\n");
      if (req.method === "GET" && path === "/readyz") {
        return this.health.synced() ? send(res, 200, `${this.health.role()}\n`) : send(res, 503, "syncing: informers have not listed yet\n");
      }
      send(res, 404, "not found: GET /healthz /readyz\n");
    });
    return { metrics, health };
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      s.closeAllConnections();
      s.close(() => resolve());
    })));
  }

  private listen(addr: HostPort, handler: (req: http.IncomingMessage, res: http.ServerResponse) => unknown): Promise<HostPort> {
    const server = http.createServer((req, res) => {
      Promise.resolve(handler(req, res)).catch((err: unknown) => send(res, 500, `${(err as Error).message}\n`));
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(addr.port, addr.host, () => {
        const a = server.address() as { address: string; port: number };
        resolve({ host: a.address, port: a.port });
      });
    });
  }
}

function send(res: http.ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
