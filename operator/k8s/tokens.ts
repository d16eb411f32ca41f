// The admin token for each namespace's sidecars (DESIGN.md "Contracts", tokens per namespace):
// the `token` key of Secret connmeter-admin-token in the pod's namespace when it exists, else the
// operator's own CONNMETER_ADMIN_TOKEN. The Secret is read with GET only (RBAC `get` limited by
// resourceNames to that one name: no list, no watch, so the operator never holds other Secrets),
// cached per namespace for a refresh period, and re-read at once after a sidecar answers 401.
import type { KubeConfig } from "@kubernetes/client-node";
import { ADMIN_TOKEN_SECRET, ADMIN_TOKEN_SECRET_KEY } from "../../sidecar/admin/contract.js";
import type { AdminTokenSource } from "../scrape/sidecar-client.js";
import { apiStatusCode, kubeRequest, seg } from "./request.js";

/** How long a namespace's token is used before it is read again, in ms (a rotated Secret is picked up within this). */
export const TOKEN_REFRESH_MS = 45_000;
/** A 401 re-reads a namespace's Secret at most once per this many ms (100 pods refusing at once cost one GET). */
export const TOKEN_REREAD_MIN_MS = 1_000;
/** Namespaces remembered at most; the least recently used are forgotten first. */
export const MAX_TOKEN_NAMESPACES = 10_000;
/** Bound of one Secret GET, in ms: a hung API server must not hold a scrape. */
const READ_TIMEOUT_MS = 5_000;

/** What reading a namespace's Secret found: its token, or `null` when the namespace has no such Secret (404). */
export type SecretRead = (namespace: string) => Promise<string | null>;

export interface NamespaceTokensOptions {
  read: SecretRead;
  /** CONNMETER_ADMIN_TOKEN: sent where a namespace has no Secret; undefined = none. */
  fallback: string | undefined;
  refreshMs?: number;
  rereadMinMs?: number;
  maxNamespaces?: number;
  /** Monotonic milliseconds. */
  clock?: () => number;
  log?: (line: string) => void;
}

interface Entry {
  /** The namespace's own token; null = no Secret there (use the fallback). */
  token: string | null;
  readAtMs: number;
  /** Set by a 401: read again before the next use. */
  stale: boolean;
  /** The read in flight, shared by every caller meanwhile. */
  reading: Promise<string | null> | undefined;
}

/**
 * Tokens per namespace, cached. A failed read (403 because RBAC lacks the rule, the API server
 * away) keeps the last known token, or uses the fallback when there is none, and logs once per
 * namespace and kind of failure: metering must not stop because a Secret could not be read.
 */
export class NamespaceTokens implements AdminTokenSource {
  private readonly entries = new Map<string, Entry>();
  private readonly refreshMs: number;
  private readonly rereadMinMs: number;
  private readonly maxNamespaces: number;
  private readonly clock: () => number;
  private readonly log: (line: string) => void;
  private readonly logged = new Set<string>();

  constructor(private readonly opts: NamespaceTokensOptions) {
    this.refreshMs = opts.refreshMs ?? TOKEN_REFRESH_MS;
    this.rereadMinMs = opts.rereadMinMs ?? TOKEN_REREAD_MIN_MS;
    this.maxNamespaces = opts.maxNamespaces ?? MAX_TOKEN_NAMESPACES;
    this.clock = opts.clock ?? (() => performance.now());
    this.log = opts.log ?? (() => undefined);
  }

  /** The token to send to the sidecars of `namespace`; undefined when there is none at all. */
  async token(namespace: string): Promise<string | undefined> {
    const entry = this.entries.get(namespace);
    if (entry) {
      // Most recently used last, so the first key is the one to forget.
      this.entries.delete(namespace);
      this.entries.set(namespace, entry);
    }
    const fresh = entry && !entry.stale && this.clock() - entry.readAtMs < this.refreshMs;
    const own = fresh ? entry.token : await this.read(namespace, entry);
    return own ?? this.opts.fallback;
  }

  /** A sidecar of `namespace` answered 401 to `token`: read the Secret again before the next call (at most once per second). */
  refused(namespace: string, _token: string | undefined): void {
    const entry = this.entries.get(namespace);
    if (entry && this.clock() - entry.readAtMs >= this.rereadMinMs) entry.stale = true;
  }

  /** Namespaces remembered now (for tests and the bound). */
  get size(): number {
    return this.entries.size;
  }

  private read(namespace: string, known: Entry | undefined): Promise<string | null> {
    if (known?.reading) return known.reading;
    const entry: Entry = known ?? { token: null, readAtMs: -Infinity, stale: false, reading: undefined };
    if (!known) this.remember(namespace, entry);
    entry.reading = this.opts.read(namespace).then(
      (token) => {
        entry.token = token;
        this.logged.delete(`${namespace}/error`);
        return token;
      },
      (err: unknown) => {
        const status = apiStatusCode(err);
        const why = status === 403
          ? `forbidden (the operator's role needs \`get\` on secrets named ${ADMIN_TOKEN_SECRET})`
          : (err as Error).message;
        this.logOnce(`${namespace}/error`, `reading Secret ${namespace}/${ADMIN_TOKEN_SECRET} failed: ${why}; using ${entry.token !== null ? "the last known token" : "CONNMETER_ADMIN_TOKEN"} for its sidecars`);
        return entry.token;
      },
    ).finally(() => {
      entry.readAtMs = this.clock();
      entry.stale = false;
      entry.reading = undefined;
    });
    return entry.reading;
  }

  private remember(namespace: string, entry: Entry): void {
    this.entries.set(namespace, entry);
    while (this.entries.size > this.maxNamespaces) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  private logOnce(key: string, line: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size >= this.maxNamespaces) this.logged.clear();
    this.logged.add(key);
    this.log(line);
  }
}

/**
 * Reads Secret `connmeter-admin-token` of `namespace` with one GET: its `token` key (base64,
 * surrounding whitespace trimmed: `kubectl create secret --from-file` keeps a trailing newline),
 * or null when the Secret does not exist. A Secret without the key is an error naming the fix.
 */
export function secretReader(kc: KubeConfig): SecretRead {
  return async (namespace) => {
    const path = `/api/v1/namespaces/${seg(namespace)}/secrets/${seg(ADMIN_TOKEN_SECRET)}`;
    let secret: { data?: Record<string, string> } | undefined;
    try {
      secret = await kubeRequest(kc, { method: "GET", path, signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
    } catch (err) {
      if (apiStatusCode(err) === 404) return null;
      throw err;
    }
    const data = secret?.data?.[ADMIN_TOKEN_SECRET_KEY];
    const token = data === undefined ? "" : Buffer.from(data, "base64").toString("utf8").trim();
    if (token === "") throw new Error(`Secret ${namespace}/${ADMIN_TOKEN_SECRET} has no non-empty key "${ADMIN_TOKEN_SECRET_KEY}" (create it with --from-literal=${ADMIN_TOKEN_SECRET_KEY}=<random>)`);
    return token;
  };
}
