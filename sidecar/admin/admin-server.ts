/**
 * The sidecar's admin port, a server of its own so app traffic can never starve it:
 *
 *   GET /healthz   200 while the process is alive
 *   GET /readyz    200 when new connections are welcome; 503 when draining, awaiting the
 *                  operator's first push (--await-budget-seconds) or at --reject-at-percent
 *                  of --max-connections (with hysteresis)
 *   GET /stats     JSON counts: connections, channels, longpoll, topics{}, ... (contract.ts
 *                  `Stats`); with CONNMETER_ADMIN_TOKEN set it requires that bearer token:
 *                  topic names are often user or room ids
 *   GET /metrics   Prometheus text, every name prefixed connmeter_; rendered at most once a
 *                  second, every scrape meanwhile gets that page
 *   GET /config    the limits and topic groups in force, where they come from ("flags" or
 *                  "pushed") and when pushed values expire:
 *                  {maxConnections, connectionBudget: n | null, rejectAtPercent, upgradeRatePerSecond,
 *                   upgradeBurst, topics: [{match, maxChannels?}], source, expiresAt: ISO | null,
 *                   ttlSeconds: n | null}; the same token as GET /stats
 *   PUT /config    replace them (partial JSON merged over the current values, optional
 *                  `ttlSeconds`: fall back to the flags unless refreshed in time); requires
 *                  `Authorization: Bearer $CONNMETER_ADMIN_TOKEN`; answers like GET /config.
 *                  `connectionBudget` is the pod's share of a cluster cap (0 admits nobody new)
 *   DELETE /config back to the flags' values at once (a deleted policy's budgets); same token
 *   GET /occupancy?topics=room:42,room:*[&nodes=true]
 *                  the cluster-wide counts spec.occupancy exposes, as the virtual topic
 *                  connmeter:occupancy pushes them: {total?, topics: {}, nodes?: {}, at}; no token
 *                  (it serves only what the policy exposes); 404 when occupancy is not enabled,
 *                  403 naming a topic outside spec.occupancy.expose, 400 for a bad query
 *
 * /metrics, /healthz, /readyz and /occupancy stay open (Prometheus and the kubelet carry no token).
 */
import { timingSafeEqual } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { TopicGroupSpec } from "../ledger/topic-groups.js";
import type { Limits } from "../limits/admission.js";
import type { ConfigProvenance } from "./pushed-config.js";
import type { HostPort, Sidecar } from "../sidecar.js";
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_SECRET, bearerToken } from "./contract.js";
import { parseConfigUpdate } from "./config-update.js";
import { CachedMetrics } from "./metrics.js";
import { OccupancyHub, type OccupancyRequest, type Refusal } from "../occupancy/occupancy-hub.js";

const MAX_CONFIG_BYTES = 1024 * 1024;
/**
 * The admin port shares the event loop with the relay, so what a flood of admin clients can
 * take is bounded: open connections (past the cap new ones are closed at once; a scrape or a
 * probe needs one each, and each holds a file descriptor), and the time a connection may take
 * to send its request or sit idle between requests.
 */
export const MAX_ADMIN_CONNECTIONS = 1024;
const ADMIN_HEADERS_TIMEOUT_MS = 5000;
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;
/**
 * Idle keep-alive of the operator's connection: longer than scrape intervals up to a minute (the
 * default is 5 s), so each interval's GET /stats and PUT /config reuse one connection instead
 * of opening a new one per pod per interval. The client may close earlier.
 */
const ADMIN_KEEP_ALIVE_MS = 65_000;

export class AdminServer {
  private readonly server: http.Server;
  private readonly metrics: CachedMetrics;

  constructor(
    private readonly sidecar: Sidecar,
    registry: Registry,
    private readonly token: string | undefined,
  ) {
    this.metrics = new CachedMetrics(registry);
    this.server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
      this.route(req, res).catch((err: unknown) => send(res, 500, { error: String(err) }));
    });
    this.server.maxConnections = MAX_ADMIN_CONNECTIONS;
    this.server.headersTimeout = ADMIN_HEADERS_TIMEOUT_MS;
    this.server.requestTimeout = ADMIN_REQUEST_TIMEOUT_MS;
    this.server.keepAliveTimeout = ADMIN_KEEP_ALIVE_MS;
  }

  async start(at: HostPort): Promise<HostPort> {
    this.server.listen(at.port, at.host);
    await once(this.server, "listening");
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const key = `${req.method} ${path}`;
    switch (key) {
      case "GET /healthz":
        return sendText(res, 200, "ok\n");
      case "GET /readyz":
        return this.sidecar.isReady() ? sendText(res, 200, "ready\n") : sendText(res, 503, this.notReadyReason());
      case "GET /stats":
        if (!this.mayRead(req, res)) return;
        return send(res, 200, this.sidecar.stats());
      case "GET /metrics":
        return sendText(res, 200, await this.metrics.render(), this.metrics.contentType);
      case "GET /config":
        if (!this.mayRead(req, res)) return;
        return send(res, 200, this.currentConfig());
      case "PUT /config":
        return this.putConfig(req, res);
      case "DELETE /config":
        return this.deleteConfig(req, res);
      case "GET /occupancy":
        return this.occupancy(req, res);
      default:
        return send(res, 404, { error: `no such endpoint ${key}; see GET /healthz /readyz /stats /metrics /config /occupancy, PUT /config` });
    }
  }

  private currentConfig(): Limits & { topics: TopicGroupSpec[] } & ConfigProvenance {
    const provenance = this.sidecar.config.provenance(); // first: an expired push reverts here
    return { ...this.sidecar.admission.current, topics: this.sidecar.ledger.topicGroups.toJSON(), ...provenance };
  }

  private notReadyReason(): string {
    if (this.sidecar.admission.isDraining) return "draining\n";
    if (this.sidecar.admission.isAwaitingBudget) return "awaiting budget\n";
    return "at capacity\n";
  }

  /** Whether a mutating call may proceed; answers 403/401 itself when not. */
  private authorized(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (this.token === undefined || this.token === "") {
      send(res, 403, { error: `${req.method} /config is disabled: start the sidecar with ${ADMIN_TOKEN_ENV} set and send it as \`Authorization: Bearer <token>\`` });
      return false;
    }
    return this.tokenMatches(req, res);
  }

  /** Whether a read of /stats or /config may proceed: open without a token, else the token is required (401 otherwise). */
  private mayRead(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    return this.token === undefined || this.token === "" || this.tokenMatches(req, res);
  }

  private tokenMatches(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (bearerMatches(req.headers.authorization, this.token ?? "")) return true;
    send(res, 401, { error: `missing or wrong bearer token: send \`Authorization: Bearer $${ADMIN_TOKEN_ENV}\` (the operator sends the \`token\` of Secret ${ADMIN_TOKEN_SECRET} in the pod's namespace)` });
    return false;
  }

  private occupancy(req: http.IncomingMessage, res: http.ServerResponse): void {
    const request = occupancyQuery(req.url ?? "/");
    const answer = "reason" in request ? request : this.sidecar.occupancy.answer(request);
    if ("reason" in answer) return send(res, REFUSAL_STATUS[answer.reason], { error: answer.detail, reason: answer.reason, ...(answer.topic ? { topic: answer.topic } : {}) });
    send(res, 200, answer);
  }

  private deleteConfig(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!this.authorized(req, res)) return;
    this.sidecar.config.reset();
    this.sidecar.occupancy.configure(null);
    send(res, 200, this.currentConfig());
  }

  private async putConfig(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!this.authorized(req, res)) return;
    const body = await readBody(req);
    if (body === null) return send(res, 413, { error: `config body over ${MAX_CONFIG_BYTES} bytes` });
    this.sidecar.config.provenance(); // an expired push reverts before the update merges over it
    const update = parseConfigUpdate(body, this.sidecar.admission.current);
    if (!update.ok) return send(res, 400, { error: update.error });
    this.sidecar.config.push(update.limits, update.topics, update.ttlSeconds, update.policy);
    if (update.occupancy !== undefined) this.sidecar.occupancy.configure(update.occupancy, update.ttlSeconds);
    this.sidecar.admission.budgetReceived();
    return send(res, 200, this.currentConfig());
  }
}

// --- GET /occupancy (issue 17) ---
/** `?topics=a,b&topics=c&nodes=true`: the same request as the virtual topic's join params. */
function occupancyQuery(url: string): OccupancyRequest | Refusal {
  const q = new URL(url, "http://admin").searchParams;
  const topics = q.getAll("topics").flatMap((t) => t.split(",")).filter((t) => t !== "");
  const nodes = q.get("nodes");
  if (nodes !== null && nodes !== "true" && nodes !== "false") return { reason: "bad_params", detail: "nodes must be true or false" };
  return OccupancyHub.parseParams({ topics, nodes: nodes === "true" });
}

const REFUSAL_STATUS: Record<Refusal["reason"], number> = {
  not_enabled: 404, not_exposed: 403, too_many_topics: 400, bad_params: 400, rate_limited: 429, unsupported_event: 400,
};
// --- end GET /occupancy ---

function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(bearerToken(header));
  const want = Buffer.from(token);
  return want.length > 0 && given.length === want.length && timingSafeEqual(given, want);
}

async function readBody(req: http.IncomingMessage): Promise<string | null> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_CONFIG_BYTES) return null;
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString("utf8");
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: http.ServerResponse, status: number, text: string, contentType = "text/plain"): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
