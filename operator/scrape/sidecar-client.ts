// The operator's side of the sidecar admin API (DESIGN.md "Contracts", typed once in
// sidecar/admin/contract.ts): GET /stats, PUT /config, DELETE /config. Keep-alive connections,
// a timeout well under the scrape interval, one concurrency limit shared fairly by the
// policies (a lane each), the bearer token of the pod's namespace on every call, and bounds on
// what a sidecar may answer.
import { Agent, type Dispatcher } from "undici";
import {
  MAX_STATS_BYTES, MAX_STATS_TOPICS, MAX_TOPIC_NAME_LENGTH, OTHER_TOPICS, bearer, isCount, parseOccupancyCounts, type ConfigPush,
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

/** How long an idle connection to a sidecar is kept at most (the sidecar's own hint can shorten it). */
const KEEP_ALIVE_MS = 120_000;

/** A failed call: `code` is stable (timeout, connect_timeout, refused, http_<status>, bad_json, bad_stats, bad_count, too_large, too_many_topics, …) for metrics and messages. */
export class SidecarError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export class SidecarClient {
  /**
   * undici rather than node:http: the same fan-out costs about 0.7× the CPU (bench/operator-bench.ts
   * measures both), and it keeps an idle socket only as long as the sidecar's `Keep-Alive:
   * timeout` hint says, so a reused socket is never one the sidecar is closing. One
   * connection per sidecar at a time is all a scrape and a push need.
   */
  private readonly agent: Agent;
  /** For endpoints whose last call got no answer: the short connect timeout. */
  private readonly suspectAgent: Agent;
  private readonly suspectConnectTimeoutMs: number;
  private readonly limiter: FairLimiter;
  private readonly dead = new DeadEndpoints();

  constructor(private readonly opts: SidecarClientOptions) {
    this.limiter = new FairLimiter(opts.maxConcurrent);
    this.suspectConnectTimeoutMs = opts.suspectConnectTimeoutMs ?? SUSPECT_CONNECT_TIMEOUT_MS;
    this.agent = new Agent({ connections: 1, keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MS });
    this.suspectAgent = new Agent({ connections: 1, keepAliveTimeout: KEEP_ALIVE_MS, keepAliveMaxTimeout: KEEP_ALIVE_MS, connect: { timeout: this.suspectConnectTimeoutMs } });
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

  /**
   * PUT /config: push limits, budgets and topic groups with a TTL. Resolves with the revision
   * the sidecar answered (contract.ts `HeldConfig`), undefined from a sidecar older than it.
   */
  async pushConfig(ip: string, port: number, config: SidecarConfig, timeoutMs: number, scope: SidecarScope): Promise<string | undefined> {
    const answer = await this.authorized("PUT", ip, port, "/config", JSON.stringify(config), timeoutMs, scope);
    try {
      return revisionOf((JSON.parse(answer) as Record<string, unknown> | null)?.revision);
    } catch {
      return undefined; // accepted all the same; without a revision it is pushed every interval
    }
  }

  /** DELETE /config: drop pushed values at once, back to the sidecar's flags. */
  async resetConfig(ip: string, port: number, timeoutMs: number, scope: SidecarScope): Promise<void> {
    await this.authorized("DELETE", ip, port, "/config", undefined, timeoutMs, scope);
  }

  close(): void {
    void this.agent.destroy();
    void this.suspectAgent.destroy();
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

  /**
   * One HTTP call through undici's handler API: the answer is collected in place (no stream,
   * no AbortController per call), cut at {@link MAX_STATS_BYTES}, and the whole call, body
   * included, has one deadline (a sidecar dribbling bytes is as stale as a silent one).
   */
  private call(method: string, ip: string, port: number, path: string, body: string | undefined, timeoutMs: number, token: string | undefined): Promise<string> {
    const where = `${method} http://${ip}:${port}${path}`;
    const endpoint = `${ip}:${port}`;
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = bearer(token);
    // A pod whose last call got no answer must connect within the short connect timeout.
    const suspect = this.dead.isSuspect(endpoint);
    const dispatcher = suspect ? this.suspectAgent : this.agent;
    return new Promise<string>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let failure: SidecarError | undefined;
      let status = 0;
      let size = 0;
      const chunks: Buffer[] = [];
      const fail = (err: SidecarError): void => {
        failure ??= err;
        clearTimeout(timer);
        reject(failure);
        if (controller && !controller.aborted) controller.abort(failure);
      };
      const timer = setTimeout(() => fail(new SidecarError("timeout", `${where}: no answer within ${timeoutMs} ms`)), timeoutMs);
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          controller = c;
          if (failure) c.abort(failure); // the deadline passed while it waited for its connection
        },
        onResponseStart: (_c, statusCode, answerHeaders) => {
          status = statusCode;
          if (Number(answerHeaders["content-length"]) > MAX_STATS_BYTES) fail(tooLarge(where));
        },
        onResponseData: (_c, chunk) => {
          size += chunk.length;
          // Stop reading at the bound: one pod must not make the operator buffer what it likes.
          if (size > MAX_STATS_BYTES) fail(tooLarge(where));
          else chunks.push(chunk);
        },
        onResponseEnd: () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks, size).toString("utf8");
          if (status >= 200 && status < 300) resolve(text);
          else reject(new SidecarError(`http_${status}`, `${where} answered ${status}: ${text.slice(0, 300)}`));
        },
        onResponseError: (_c, err) => fail(this.classify(err, where, suspect)),
      };
      try {
        // No headersTimeout/bodyTimeout: the one deadline above covers the whole call.
        dispatcher.dispatch({ origin: `http://${endpoint}`, path, method, headers, body }, handler);
      } catch (err) {
        fail(this.classify(err, where, suspect));
      }
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

  /** A SidecarError with a stable code for what undici or the socket reported. */
  private classify(err: unknown, where: string, suspect: boolean): SidecarError {
    if (err instanceof SidecarError) return err;
    const code = errorCode(err);
    if (code === "connect_timeout" && suspect) {
      return new SidecarError(code, `${where}: no connection within ${this.suspectConnectTimeoutMs} ms (its last call failed too: pod or node down?)`);
    }
    return new SidecarError(code, `${where}: ${errorMessage(err)}`);
  }
}

/** Codes that say nothing answered: the endpoint becomes suspect. An HTTP error or a bad body says it is alive. */
const UNREACHABLE_CODES = new Set(["timeout", "connect_timeout", "refused", "unreachable"]);

function tooLarge(where: string): SidecarError {
  return new SidecarError("too_large", `${where}: answer over ${MAX_STATS_BYTES} bytes (is adminPort the connmeter sidecar's admin port?)`);
}

/** The stable code of a failed call: undici's errors carry `code`, a socket error's errno code sits on it or on its `cause`. */
function errorCode(err: unknown): string {
  const codes = [codeOf(err), codeOf((err as { cause?: unknown } | undefined)?.cause)];
  for (const code of codes) {
    switch (code) {
      case "ECONNREFUSED": return "refused";
      case "EHOSTUNREACH": case "ENETUNREACH": return "unreachable";
      case "UND_ERR_CONNECT_TIMEOUT": return "connect_timeout";
      case "UND_ERR_HEADERS_TIMEOUT": case "UND_ERR_BODY_TIMEOUT": return "timeout";
      case "ECONNRESET": case "UND_ERR_SOCKET": case "EPIPE": return "reset";
    }
  }
  return "error";
}

function codeOf(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string" ? (err as { code: string }).code : undefined;
}

function errorMessage(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const text = err instanceof Error ? err.message : String(err);
  return cause instanceof Error && cause.message && !text.includes(cause.message) ? `${text} (${cause.message})` : text;
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
  // --- occupancy (issue 17): optional; a sidecar from before it has none ---
  if (d.occupancy !== undefined) {
    const occupancy = parseOccupancyCounts(d.occupancy, `/stats of ${where}: occupancy`);
    if (typeof occupancy === "string") throw new SidecarError("bad_stats", occupancy);
    sample.occupancy = occupancy;
  }
  if (d.usage !== undefined) sample.usage = parseUsage(d.usage, where);
  const held = d.config as Record<string, unknown> | undefined;
  const revision = revisionOf(held?.revision);
  // A hint, not a count: one that cannot be read only means the config is pushed again.
  if (revision !== undefined && (held?.source === "flags" || held?.source === "pushed")) sample.config = { source: held.source, revision };
  if (d.attempts !== undefined) {
    const a = d.attempts as Record<string, unknown>;
    if (typeof a !== "object" || a === null || Array.isArray(a)) throw new SidecarError("bad_stats", `/stats of ${where}: attempts is not an object of counts`);
    sample.attempts = { upgrades: count(a, "upgrades", where, true), joins: count(a, "joins", where, true) };
    for (const f of ["joinErrors", "disconnects", "leaves"] as const) if (a[f] !== undefined) sample.attempts[f] = count(a, f, where, false);
  }
  return sample;
}

/** A config revision as a sidecar reports it: a short string, else undefined. */
function revisionOf(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 && v.length <= 64 ? v : undefined;
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
