// One raw request to the API server through client-node's own machinery: `RequestContext`,
// `KubeConfig.applySecurityAuthentication` (client certificates, bearer tokens, token files that
// rotate in cluster, exec and auth-provider plugins) and client-node's undici fetch. The
// generated APIs cannot list an arbitrary collection path, take no per-call AbortSignal, and
// default PATCH to JSON Patch; this helper does all three explicitly, with one error type.
import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig } from "@kubernetes/client-node";

/** Content types the API server accepts for PATCH (client-node's PatchStrategy values). */
export const MERGE_PATCH = "application/merge-patch+json";
export const JSON_PATCH = "application/json-patch+json";

/** An API server answer outside 2xx, with its Status message and reason kept. */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    /** HTTP status, e.g. 404, 409, 410, 422. */
    readonly statusCode: number,
    /** The Status object's `message`, else the body text, else the HTTP reason. */
    readonly apiMessage: string,
    /** The Status object's `reason`, e.g. "NotFound", "Conflict", "Expired". */
    readonly reason: string | undefined,
    /** What was asked, for logs: "PATCH /apis/...". */
    readonly request: string,
  ) {
    super(`${request}: ${statusCode}${reason ? ` ${reason}` : ""}: ${apiMessage}`);
  }
}

/**
 * The HTTP status carried by an error from this folder (KubeApiError), from client-node
 * (ApiException `code`) or from its Watch (`statusCode`); undefined for anything else
 * (network errors, aborts).
 */
export function apiStatusCode(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.statusCode;
  if (err && typeof err === "object") {
    const e = err as { statusCode?: unknown; code?: unknown };
    if (typeof e.statusCode === "number") return e.statusCode;
    // ApiException has a numeric `code`; Node's system errors have string codes (ECONNREFUSED).
    if (typeof e.code === "number" && e.code >= 100 && e.code < 600) return e.code;
  }
  return undefined;
}

export interface KubeRequest {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Absolute API path, e.g. "/api/v1/namespaces/ns/pods/p". */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** Serialized as JSON. */
  body?: unknown;
  /** Defaults to application/json; PATCH must say which patch it is. */
  contentType?: string;
  signal?: AbortSignal;
}

const METHODS: Record<KubeRequest["method"], HttpMethod> = {
  GET: HttpMethod.GET, POST: HttpMethod.POST, PUT: HttpMethod.PUT, PATCH: HttpMethod.PATCH, DELETE: HttpMethod.DELETE,
};

const http = new IsomorphicFetchHttpLibrary();

/**
 * Sends one request and returns the parsed JSON body (undefined when empty). Throws
 * KubeApiError for non-2xx answers; network errors and aborts are thrown as they come.
 */
export async function kubeRequest<T = unknown>(kc: KubeConfig, req: KubeRequest): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("kubeconfig has no current cluster (check current-context)");
  const url = new URL(cluster.server.replace(/\/+$/, "") + req.path);
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined && v !== "") url.searchParams.set(k, String(v));
  const ctx = new RequestContext(url.toString(), METHODS[req.method]);
  // Authentication first: it re-reads token files and runs exec plugins on every request, so a
  // rotated ServiceAccount token is picked up without a restart.
  await kc.applySecurityAuthentication(ctx);
  ctx.setHeaderParam("Accept", "application/json");
  if (req.body !== undefined) {
    if (req.method === "PATCH" && !req.contentType) throw new Error("PATCH needs an explicit contentType (merge or JSON patch)");
    ctx.setHeaderParam("Content-Type", req.contentType ?? "application/json");
    ctx.setBody(JSON.stringify(req.body));
  }
  if (req.signal) ctx.setSignal(req.signal);
  const res = await http.send(ctx).toPromise();
  const text = await res.body.text();
  if (res.httpStatusCode < 200 || res.httpStatusCode >= 300) {
    throw errorFromResponse(res.httpStatusCode, text, `${req.method} ${req.path}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Builds a KubeApiError from a response body that is usually a metav1.Status. */
export function errorFromResponse(statusCode: number, text: string, request: string): KubeApiError {
  let message = text.trim() || `HTTP ${statusCode}`;
  let reason: string | undefined;
  try {
    const status = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof status.message === "string") message = status.message;
    if (typeof status.reason === "string") reason = status.reason;
  } catch {
    // Not JSON (a proxy's HTML error page): keep the text.
  }
  return new KubeApiError(statusCode, message, reason, request);
}

/** Formats a MicroTime: RFC 3339 with exactly six fractional digits, the form the API server parses. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** Percent-encodes one path segment (names are DNS labels, but selectors and users are not). */
export const seg = (s: string): string => encodeURIComponent(s);
