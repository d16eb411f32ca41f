// The operator's side of the sidecar admin API (DESIGN.md "Contracts", typed once in
// sidecar/admin/contract.ts): GET /stats, PUT /config, DELETE /config. Keep-alive connections,
// a timeout well under the scrape interval, one concurrency limit shared fairly by the
// policies (a lane each), the bearer token of the pod's namespace on every call, and bounds on
// what a sidecar may answer.
import { Agent, request } from "node:http";
import {
  MAX_STATS_BYTES, MAX_STATS_TOPICS, MAX_TOPIC_NAME_LENGTH, OTHER_TOPICS, bearer, isCount, type ConfigPush,
} from "../../sidecar/admin/contract.js";
import type { SidecarSample, SidecarUsage } from "../aggregate/aggregate.js";
import { DeadEndpoints } from "./dead-endpoints.js";
import { FairLimiter } from "./limiter.js";

/** What the operator pushes to one sidecar (`PUT /config`): the contract's {@link ConfigPush}. */
export type SidecarConfig = ConfigPush;

/** Where a call belongs: the pod's namespace (whose token it carries) and the policy it serves (its lane). */
export interface SidecarScope {
  namespace: string;
  /** The policy's key, namespace/name: calls of one policy share a lane of the limiter. */
  policy: string;
}

/** The admin token to send to a namespace's sidecars (operator/k8s/tokens.ts reads them from Secrets). */
export interface AdminTokenSource {
  /** The token for sidecars of `namespace`; undefined = send none. */
  token(namespace: string): Promise<string | undefined>;
  /** A sidecar of `namespace` answered 401 to `token`: look again before the next call. */
  refused(namespace: string, token: string | undefined): void;
}

/** One token for every namespace (tests, and an operator run without access to Secrets). */
export function staticTokens(token: string | undefined): AdminTokenSource {
  return { token: () => Promise.resolve(token), refused: () => undefined };
}

export interface SidecarClientOptions {
  /** Calls in flight at once, over every policy (--max-concurrent-scrapes). */
  maxConcurrent: number;
  tokens: AdminTokenSource;
  /** Connect timeout, in ms, for an endpoint whose last call timed out or could not connect (default {@link SUSPECT_CONNECT_TIMEOUT_MS}). */
  suspectConnectTimeoutMs?: number;
}

/**
 * A pod whose last call timed out or could not connect must connect within this many ms, not
 * the whole timeout: on a dead node a connect never completes, and each such call would hold a
 * slot for the full timeout. A live sidecar on the pod network connects in far less.
 */
export const SUSPECT_CONNECT_TIMEOUT_MS = 250;

/** A failed call: `code` is stable (timeout, connect_timeout, refused, http_<status>, bad_json, bad_stats, bad_count, too_large, too_many_topics, …) for metrics and messages. */
export class SidecarError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export class SidecarClient {
  private readonly agent = new Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxFreeSockets: 1024, scheduling: "lifo" });
  private readonly limiter: FairLimiter;
  private readonly dead = new DeadEndpoints();
  private readonly suspectConnectTimeoutMs: number;

  constructor(private readonly opts: SidecarClientOptions) {
    this.limiter = new FairLimiter(opts.maxConcurrent);
    this.suspectConnectTimeoutMs = opts.suspectConnectTimeoutMs ?? SUSPECT_CONNECT_TIMEOUT_MS;
  }

  /** GET /stats of the sidecar at ip:port, with the token of `scope.namespace`. */
  async stats(ip: string, port: number, timeoutMs: number, scope: SidecarScope): Promise<SidecarSample> {
    const body = await this.authorized("GET", ip, port, "/stats", undefined, timeoutMs, scope);
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch {
      throw new SidecarError("bad_json", `GET /stats on ${ip}:${port} did not answer JSON (is adminPort the connmeter sidecar's admin port?)`);
    }
    return parseStats(doc, `${ip}:${port}`);
  }

  /** PUT /config: push limits, budgets and topic groups with a TTL. */
  async pushConfig(ip: string, port: number, config: SidecarConfig, timeoutMs: number, scope: SidecarScope): Promise<void> {
    await this.authorized("PUT", ip, port, "/config", JSON.stringify(config), timeoutMs, scope);
  }

  /** DELETE /config: drop pushed values at once, back to the sidecar's flags. */
  async resetConfig(ip: string, port: number, timeoutMs: number, scope: SidecarScope): Promise<void> {
    await this.authorized("DELETE", ip, port, "/config", undefined, timeoutMs, scope);
  }

  close(): void {
    this.agent.destroy();
  }

  /** One call with the namespace's token; after a 401 the token is looked up again and, if it changed, the call is made once more. */
  private async authorized(method: string, ip: string, port: number, path: string, body: string | undefined, timeoutMs: number, scope: SidecarScope): Promise<string> {
    const token = await this.opts.tokens.token(scope.namespace);
    try {
      return await this.limiter.run(scope.policy, () => this.call(method, ip, port, path, body, timeoutMs, token));
    } catch (err) {
      if (!(err instanceof SidecarError) || err.code !== "http_401") throw err;
      this.opts.tokens.refused(scope.namespace, token);
      const again = await this.opts.tokens.token(scope.namespace);
      if (again === token) throw err;
      return await this.limiter.run(scope.policy, () => this.call(method, ip, port, path, body, timeoutMs, again));
    }
  }

  private call(method: string, ip: string, port: number, path: string, body: string | undefined, timeoutMs: number, token: string | undefined): Promise<string> {
    const where = `${method} http://${ip}:${port}${path}`;
    const endpoint = `${ip}:${port}`;
    return new Promise<string>((resolve, reject) => {
      const headers: Record<string, string> = { accept: "application/json" };
      if (body !== undefined) headers["content-type"] = "application/json";
      if (token) headers.authorization = bearer(token);
      // Settle first, then destroy: once a response has started, Node reports a destroy on it as a plain "aborted".
      const fail = (err: SidecarError): void => {
        reject(err);
        req.destroy(err);
      };
      const req = request({ host: ip, port, path, method, agent: this.agent, headers, timeout: timeoutMs }, (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers["content-length"]);
        if (declared > MAX_STATS_BYTES) return fail(tooLarge(where));
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          // Stop reading at the bound: one pod must not make the operator buffer what it likes.
          if (size > MAX_STATS_BYTES) fail(tooLarge(where));
          else chunks.push(c);
        });
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (status >= 200 && status < 300) resolve(text);
          else reject(new SidecarError(`http_${status}`, `${where} answered ${status}: ${text.slice(0, 300)}`));
        });
        res.on("error", (err) => reject(err instanceof SidecarError ? err : new SidecarError("reset", `${where}: ${err.message}`)));
      });
      // A deadline for the whole call, not only for idle sockets: a sidecar dribbling bytes is as stale as a silent one.
      const timedOut = () => fail(new SidecarError("timeout", `${where}: no answer within ${timeoutMs} ms`));
      const timer = setTimeout(timedOut, timeoutMs);
      req.on("close", () => clearTimeout(timer));
      req.on("timeout", timedOut);
      if (this.dead.isSuspect(endpoint)) this.limitConnect(req, where, fail);
      req.on("error", (err: NodeJS.ErrnoException) => {
        reject(err instanceof SidecarError ? err : new SidecarError(errorCode(err), `${where}: ${err.message}`));
      });
      req.end(body);
    }).then(
      (text) => {
        this.dead.answered(endpoint);
        return text;
      },
      (err: unknown) => {
        if (err instanceof SidecarError && UNREACHABLE_CODES.has(err.code)) this.dead.failed(endpoint);
        else this.dead.answered(endpoint);
        throw err;
      },
    );
  }

  /** A suspect endpoint must connect within the short connect timeout. */
  private limitConnect(req: ReturnType<typeof request>, where: string, fail: (err: SidecarError) => void): void {
    req.once("socket", (socket) => {
      if (!socket.connecting) return; // a kept-alive socket: nothing to connect
      const timer = setTimeout(() => fail(new SidecarError("connect_timeout",
        `${where}: no connection within ${this.suspectConnectTimeoutMs} ms (its last call failed too: pod or node down?)`)), this.suspectConnectTimeoutMs);
      socket.once("connect", () => clearTimeout(timer));
      socket.once("close", () => clearTimeout(timer));
    });
  }
}

/** Codes that say nothing answered: the endpoint becomes suspect. An HTTP error or a bad body says it is alive. */
const UNREACHABLE_CODES = new Set(["timeout", "connect_timeout", "refused", "unreachable"]);

function tooLarge(where: string): SidecarError {
  return new SidecarError("too_large", `${where}: answer over ${MAX_STATS_BYTES} bytes (is adminPort the connmeter sidecar's admin port?)`);
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
  if (!isCount(v)) throw new SidecarError("bad_count", `/stats of ${where}: ${field} is ${JSON.stringify(v)}, not a count (a non-negative integer)`);
  return v;
}

/**
 * The fields of a /stats answer the operator relies on (DESIGN.md), checked: counts must be
 * non-negative integers (`bad_count`), `topics` an object of at most {@link MAX_STATS_TOPICS}
 * entries (`too_many_topics`). A topic name longer than {@link MAX_TOPIC_NAME_LENGTH} is not an
 * error (a client picks topic names): its channels count under {@link OTHER_TOPICS}.
 */
export function parseStats(doc: unknown, where: string): SidecarSample {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new SidecarError("bad_stats", `/stats of ${where} is not a JSON object`);
  const d = doc as Record<string, unknown>;
  // No prototype: a topic named __proto__ is a key like any other.
  const topics = Object.create(null) as Record<string, number>;
  if (d.topics !== undefined) {
    if (typeof d.topics !== "object" || d.topics === null || Array.isArray(d.topics)) throw new SidecarError("bad_stats", `/stats of ${where}: topics is not an object of counts`);
    const entries = Object.entries(d.topics);
    if (entries.length > MAX_STATS_TOPICS) {
      throw new SidecarError("too_many_topics", `/stats of ${where} lists ${entries.length} topics, over ${MAX_STATS_TOPICS} (the sidecar's --max-topic-labels names at most 5,000)`);
    }
    for (const [name, v] of entries) {
      if (!isCount(v)) throw new SidecarError("bad_count", `/stats of ${where}: topic ${JSON.stringify(name.slice(0, 80))} has ${JSON.stringify(v)}, not a count (a non-negative integer)`);
      const key = name.length > MAX_TOPIC_NAME_LENGTH ? OTHER_TOPICS : name;
      topics[key] = (topics[key] ?? 0) + v;
    }
  }
  const sample: SidecarSample = { connections: count(d, "connections", where, true), channels: count(d, "channels", where, true), longpoll: count(d, "longpoll", where, false), topics };
  if (d.usage !== undefined) sample.usage = parseUsage(d.usage, where);
  if (d.attempts !== undefined) {
    const a = d.attempts as Record<string, unknown>;
    if (typeof a !== "object" || a === null || Array.isArray(a)) throw new SidecarError("bad_stats", `/stats of ${where}: attempts is not an object of counts`);
    sample.attempts = { upgrades: count(a, "upgrades", where, true), joins: count(a, "joins", where, true) };
    for (const f of ["joinErrors", "disconnects", "leaves"] as const) if (a[f] !== undefined) sample.attempts[f] = count(a, f, where, false);
  }
  return sample;
}

// --- usage (issue 18) ---
/** `usage` of a /stats answer: `since` a time, seconds finite and non-negative, at most {@link MAX_STATS_TOPICS} groups. */
function parseUsage(v: unknown, where: string): SidecarUsage {
  const bad = (what: string) => new SidecarError("bad_usage", `/stats of ${where}: usage.${what}`);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad("is not an object");
  const u = v as Record<string, unknown>;
  if (typeof u.since !== "string" || Number.isNaN(Date.parse(u.since))) throw bad(`since is ${JSON.stringify(u.since)}, not an ISO 8601 time`);
  if (!isSeconds(u.connectionSeconds)) throw bad(`connectionSeconds is ${JSON.stringify(u.connectionSeconds)}, not a non-negative number`);
  const channelSeconds = Object.create(null) as Record<string, number>;
  const groups = u.channelSeconds ?? {};
  if (typeof groups !== "object" || groups === null || Array.isArray(groups)) throw bad("channelSeconds is not an object of seconds");
  const entries = Object.entries(groups);
  if (entries.length > MAX_STATS_TOPICS) throw bad(`channelSeconds has ${entries.length} groups, over ${MAX_STATS_TOPICS}`);
  for (const [name, s] of entries) {
    if (!isSeconds(s)) throw bad(`channelSeconds[${JSON.stringify(name.slice(0, 80))}] is ${JSON.stringify(s)}, not a non-negative number`);
    channelSeconds[name] = s;
  }
  return { since: u.since, connectionSeconds: u.connectionSeconds, channelSeconds };
}

function isSeconds(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}
// --- end usage ---
