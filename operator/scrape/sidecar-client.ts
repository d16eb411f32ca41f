// The operator's side of the sidecar admin API (DESIGN.md "Contracts"): GET /stats, PUT /config,
// DELETE /config. Keep-alive connections, a timeout well under the scrape interval, and one
// concurrency limit for all policies.
import { Agent, request } from "node:http";
import type { SidecarSample } from "../aggregate/aggregate.js";
import { ConcurrencyLimiter } from "./limiter.js";

/** What the operator pushes to one sidecar (`PUT /config`). */
export interface SidecarConfig {
  /** The pod's own cap (limits.maxConnectionsPerPod); 0 = none. */
  maxConnections?: number;
  rejectAtPercent?: number;
  /** This pod's share of the cluster cap (limits.maxConnections); null lifts it. */
  connectionBudget?: number | null;
  /** Topic groups, each with this pod's share of the group's cap. */
  topics?: { match: string; maxChannels?: number }[];
  /** Seconds the pushed values hold without a refresh; then the sidecar falls back to its flags. */
  ttlSeconds: number;
}

export interface SidecarClientOptions {
  maxConcurrent: number;
  /** Bearer token for PUT/DELETE /config (CONNMETER_ADMIN_TOKEN). */
  token: string | undefined;
}

/** A failed call: `code` is stable (timeout, refused, http_<status>, bad_json, …) for metrics and messages. */
export class SidecarError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export class SidecarClient {
  private readonly agent = new Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxFreeSockets: 1024, scheduling: "lifo" });
  private readonly limiter: ConcurrencyLimiter;

  constructor(private readonly opts: SidecarClientOptions) {
    this.limiter = new ConcurrencyLimiter(opts.maxConcurrent);
  }

  /** GET /stats of the sidecar at ip:port. */
  async stats(ip: string, port: number, timeoutMs: number): Promise<SidecarSample> {
    const body = await this.limiter.run(() => this.call("GET", ip, port, "/stats", undefined, timeoutMs));
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch {
      throw new SidecarError("bad_json", `GET /stats on ${ip}:${port} did not answer JSON (is adminPort the connmeter sidecar's admin port?)`);
    }
    return parseStats(doc, `${ip}:${port}`);
  }

  /** PUT /config: push limits, budgets and topic groups with a TTL. */
  async pushConfig(ip: string, port: number, config: SidecarConfig, timeoutMs: number): Promise<void> {
    await this.limiter.run(() => this.call("PUT", ip, port, "/config", JSON.stringify(config), timeoutMs));
  }

  /** DELETE /config: drop pushed values at once, back to the sidecar's flags. */
  async resetConfig(ip: string, port: number, timeoutMs: number): Promise<void> {
    await this.limiter.run(() => this.call("DELETE", ip, port, "/config", undefined, timeoutMs));
  }

  close(): void {
    this.agent.destroy();
  }

  private call(method: string, ip: string, port: number, path: string, body: string | undefined, timeoutMs: number): Promise<string> {
    const where = `${method} http://${ip}:${port}${path}`;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { accept: "application/json" };
      if (body !== undefined) headers["content-type"] = "application/json";
      if (method !== "GET" && this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
      const req = request({ host: ip, port, path, method, agent: this.agent, headers, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve(text);
          else reject(new SidecarError(`http_${status}`, `${where} answered ${status}: ${text.slice(0, 300)}`));
        });
        res.on("error", (err) => reject(new SidecarError("reset", `${where}: ${err.message}`)));
      });
      // A deadline for the whole call, not only for idle sockets: a sidecar dribbling bytes is as stale as a silent one.
      const timer = setTimeout(() => req.destroy(new SidecarError("timeout", `${where}: no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on("close", () => clearTimeout(timer));
      req.on("timeout", () => req.destroy(new SidecarError("timeout", `${where}: no answer within ${timeoutMs} ms`)));
      req.on("error", (err: NodeJS.ErrnoException) => {
        reject(err instanceof SidecarError ? err : new SidecarError(errorCode(err), `${where}: ${err.message}`));
      });
      req.end(body);
    });
  }
}

function errorCode(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "ECONNREFUSED": return "refused";
    case "EHOSTUNREACH": case "ENETUNREACH": return "unreachable";
    case "ECONNRESET": return "reset";
    default: return "error";
  }
}

/** A count of the answer; `required` ones must be there (DESIGN.md: connections, channels), so a service that is not a sidecar is never read as zero. */
function count(doc: Record<string, unknown>, field: string, where: string, required: boolean): number {
  if (required && doc[field] === undefined) throw new SidecarError("bad_stats", `/stats of ${where} has no ${field}: is adminPort the connmeter sidecar's admin port?`);
  const v = doc[field] ?? 0;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new SidecarError("bad_stats", `/stats of ${where}: ${field} is not a count`);
  return v;
}

/** The fields of a /stats answer the operator relies on (DESIGN.md), checked. */
export function parseStats(doc: unknown, where: string): SidecarSample {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new SidecarError("bad_stats", `/stats of ${where} is not a JSON object`);
  const d = doc as Record<string, unknown>;
  const topics: Record<string, number> = {};
  if (typeof d.topics === "object" && d.topics !== null) {
    for (const [k, v] of Object.entries(d.topics)) if (typeof v === "number" && Number.isFinite(v) && v >= 0) topics[k] = v;
  }
  return { connections: count(d, "connections", where, true), channels: count(d, "channels", where, true), longpoll: count(d, "longpoll", where, false), topics };
}
