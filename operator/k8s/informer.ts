// A list+watch cache for one collection path that never gives up. client-node's own informer
// (ListWatch) stops on most errors and never asks for bookmarks or a server timeout; this one
// follows client-go's Reflector instead (OPERATOR-NOTES §7):
//   list → watch(allowWatchBookmarks, timeoutSeconds ∈ [300, 600)) from the list's resourceVersion
//   every event (bookmarks too) advances the resourceVersion
//   clean close (the server's timeout)  → watch again from the last resourceVersion, at once
//   410 Gone / ERROR Expired            → relist and diff the cache (deletes for what vanished)
//   no event, no bookmark for 150 s     → the stream is dead (a vanished NAT entry, a half-open
//                                          TCP connection): watch again at once from the last
//                                          resourceVersion. The API server's watch cache sends a
//                                          bookmark about every minute, so this is ~2.5 periods.
//   anything else                       → back off 800 ms → 30 s with jitter, then retry; forever
// The controller must still reconcile by key and never trust an event's content: a relist
// can fold many changes into one update.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { Backoff, monotonicNow, realDelay, type Clock, type Delay } from "./backoff.js";
import { KubeApiError, apiStatusCode } from "./request.js";
import { clientNodeTransport } from "./watch-transport.js";

/** Re-exported so code outside this folder never imports client-node for the type. */
export type { KubernetesObject };

export type ChangeType = "add" | "update" | "delete";
export type ChangeHandler<T> = (type: ChangeType, obj: T, old?: T) => void;

/** Why a watch was started again; bounded, so usable as a metric label. */
export type RestartReason = "closed" | "expired" | "timeout" | "error" | "list_error";

export interface InformerOptions {
  kc: KubeConfig;
  /** Name for logs and metrics, e.g. "pods". */
  resource: string;
  /** Collection path, e.g. "/api/v1/pods" or "/apis/apps/v1/namespaces/ns/deployments". */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Monotonic milliseconds for watch durations and the inactivity timeout; monotonicNow by default. */
  clock?: Clock;
  delay?: Delay;
  random?: () => number;
  log?: (line: string) => void;
  /** Called on every watch restart, e.g. to count connmeter_watch_restarts_total{resource,reason}. */
  onWatchRestart?: (resource: string, reason: RestartReason) => void;
  /** Replaces the API server (unit tests); defaults to client-node's Watch and a plain list. */
  transport?: InformerTransport;
  /** Page size of the list (client-go uses 500). */
  pageSize?: number;
  /** A watch with no event (bookmarks count) for this long is restarted; WATCH_INACTIVITY_TIMEOUT_MS by default. */
  watchInactivityTimeoutMs?: number;
  /**
   * Applied to every list item and every ADDED, MODIFIED and DELETED watch object before it is
   * cached or handed to handlers, like controller-runtime's cache TransformFunc: keep only what
   * the controller reads (see transforms.ts), so the decoded original is garbage at once. It
   * must keep metadata name, namespace and resourceVersion (the key and change detection) and
   * must not throw on missing fields. Default: objects are cached as decoded.
   */
  transform?: (obj: KubernetesObject) => KubernetesObject;
}

/** One page of a list. */
export interface ListPage<T> {
  items: T[];
  resourceVersion: string;
  continueToken?: string;
}

/** What the informer needs from the API server; the seam unit tests fake. */
export interface InformerTransport<T = KubernetesObject> {
  list(query: { limit?: number; continueToken?: string }, signal: AbortSignal): Promise<ListPage<T>>;
  /**
   * Starts a watch. `onEvent` gets each decoded event; `onDone` is called once, with an error
   * (carrying `statusCode` for HTTP errors) or null for a clean end. Resolves to a handle that
   * ends the watch; may also reject when the request cannot even be made.
   */
  watch(
    query: { resourceVersion: string; timeoutSeconds: number },
    onEvent: (type: string, obj: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<{ abort(): void }>;
}

/** Server-side watch timeout range, seconds (client-go's Reflector: [5, 10) minutes). */
export const WATCH_TIMEOUT_MIN_S = 300;
export const WATCH_TIMEOUT_MAX_S = 600;
/**
 * Silence after which a watch is presumed dead, ms: the API server's watch cache sends each
 * watcher that asked for them a bookmark about every minute, so two missed bookmarks and some
 * slack. A server that sends none (watch cache off) costs one cheap re-watch (no relist) per
 * period on a quiet collection.
 */
export const WATCH_INACTIVITY_TIMEOUT_MS = 150_000;
/** A clean close sooner than this with no event is treated like an error (no hot loop). */
const MIN_HEALTHY_WATCH_MS = 1_000;

type WatchEnd =
  | { kind: "closed"; events: number; durationMs: number }
  | { kind: "silent"; silentMs: number }
  | { kind: "expired"; detail: string }
  | { kind: "error"; err: unknown }
  | { kind: "aborted" };

/**
 * A cache of every object under one collection path, kept current by list+watch.
 * Objects are keyed by namespace/name; handlers see adds, updates (only when the
 * resourceVersion changed) and deletes, including those a relist discovers.
 */
export class Informer<T extends KubernetesObject> {
  private readonly o: InformerOptions;
  private readonly transport: InformerTransport;
  private readonly transform: (obj: KubernetesObject) => T;
  private readonly clock: Clock;
  private readonly delay: Delay;
  private readonly random: () => number;
  private readonly log: (line: string) => void;
  private readonly backoff: Backoff;
  private cache = new Map<string, T>();
  private readonly handlers = new Set<ChangeHandler<T>>();
  private readonly syncWaiters = new Set<() => void>();
  private resourceVersion: string | undefined;
  private synced = false;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private readonly restartCounts = new Map<RestartReason, number>();

  constructor(opts: InformerOptions) {
    this.o = opts;
    this.clock = opts.clock ?? monotonicNow;
    this.delay = opts.delay ?? realDelay;
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.backoff = new Backoff({ clock: this.clock, random: this.random });
    this.transport = opts.transport ?? clientNodeTransport(opts);
    // Without a transform the decoded object is cached as is; T is the caller's promise about it.
    this.transform = (opts.transform ?? ((o: KubernetesObject) => o)) as (obj: KubernetesObject) => T;
  }

  /** True once the first full list is in the cache (and stays true across relists). */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** Watch restarts since construction, by reason. */
  get restarts(): ReadonlyMap<RestartReason, number> {
    return this.restartCounts;
  }

  /** Starts listing and watching in the background; a second call does nothing. */
  start(): void {
    if (this.abort) return;
    const abort = new AbortController();
    this.abort = abort;
    this.loop = this.run(abort.signal);
  }

  /** Ends the watch and any backoff wait; resolves when the loop has exited. */
  async stop(): Promise<void> {
    const abort = this.abort;
    if (!abort) return;
    abort.abort(new Error(`informer ${this.o.resource} stopped`));
    await this.loop;
    if (this.abort === abort) this.abort = undefined;
  }

  /** Resolves after the first full list; rejects if `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        this.syncWaiters.delete(done);
        reject(signal?.reason as Error);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.syncWaiters.add(done);
    });
  }

  /** The cached object, or undefined. Pass undefined as namespace for cluster-scoped kinds. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(keyOf(namespace, name));
  }

  /** Cached objects, all or those of one namespace. */
  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  onChange(handler: ChangeHandler<T>): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  private async run(signal: AbortSignal): Promise<void> {
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
        }
        const end = await this.watchOnce(signal);
        if (end.kind === "aborted") break;
        if (end.kind === "expired") {
          // The resourceVersion left the server's history window: only a relist can
          // tell us what changed meanwhile. No backoff: it is not a failure.
          this.restarted("expired", `resourceVersion expired (${end.detail}); relisting`);
          needList = true;
          continue;
        }
        if (end.kind === "silent") {
          // Not a failure of the server: re-watch at once; a failing request paces itself below.
          this.restarted("timeout", `watch stalled: no event or bookmark for ${(end.silentMs / 1000).toFixed(0)} s; re-watching from ${this.resourceVersion}`);
          continue;
        }
        if (end.kind === "closed" && (end.events > 0 || end.durationMs >= MIN_HEALTHY_WATCH_MS)) {
          this.restarted("closed", `watch closed by the server after ${(end.durationMs / 1000).toFixed(1)} s, ${end.events} event(s); re-watching from ${this.resourceVersion}`);
          continue;
        }
        const [reason, what] = end.kind === "closed" ? ["error" as const, "watch closed at once with no event"] : describe(end.err);
        await this.pause(reason, what, signal);
      } catch (err) {
        if (signal.aborted) break;
        await this.pause("list_error", `list failed: ${describe(err)[1]}`, signal);
      }
    }
  }

  private async pause(reason: RestartReason, what: string, signal: AbortSignal): Promise<void> {
    const ms = this.backoff.next();
    this.restarted(reason, `${what}; retrying in ${ms} ms`);
    try {
      await this.delay(ms, signal);
    } catch {
      // Aborted by stop(): the loop condition ends it.
    }
  }

  private restarted(reason: RestartReason, message: string): void {
    this.restartCounts.set(reason, (this.restartCounts.get(reason) ?? 0) + 1);
    this.log(`informer ${this.o.resource}: ${message}`);
    this.o.onWatchRestart?.(this.o.resource, reason);
  }

  /** Lists everything (paginated), swaps the cache and emits the difference. */
  private async relist(signal: AbortSignal): Promise<void> {
    const limit = this.o.pageSize ?? 500;
    // Each page is trimmed as it arrives: a relist of 20k pods never holds them all decoded.
    let items: T[] = [];
    let page = await this.transport.list({ limit }, signal);
    for (const o of page.items) items.push(this.transform(o));
    while (page.continueToken) {
      try {
        page = await this.transport.list({ limit, continueToken: page.continueToken }, signal);
        for (const o of page.items) items.push(this.transform(o));
      } catch (err) {
        // A continue token lives about 5 min; when it expires start over in one request.
        if (apiStatusCode(err) !== 410) throw err;
        page = await this.transport.list({}, signal);
        items = page.items.map((o) => this.transform(o));
      }
    }
    if (signal.aborted) return;
    this.replace(items);
    this.resourceVersion = page.resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters) w();
      this.syncWaiters.clear();
    }
  }

  private replace(items: readonly T[]): void {
    const next = new Map<string, T>();
    for (const obj of items) next.set(keyOfObj(obj), obj);
    const prev = this.cache;
    this.cache = next;
    for (const [key, old] of prev) if (!next.has(key)) this.emit("delete", old);
    for (const [key, obj] of next) {
      const old = prev.get(key);
      if (!old) this.emit("add", obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit("update", obj, old);
    }
  }

  private watchOnce(signal: AbortSignal): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      const startedAt = this.clock();
      let lastEventAt = startedAt;
      let events = 0;
      let ended = false;
      let handle: { abort(): void } | undefined;
      const watchdog = new AbortController();
      const finish = (end: WatchEnd) => {
        if (ended) return;
        ended = true;
        signal.removeEventListener("abort", onAbort);
        watchdog.abort();
        handle?.abort();
        resolve(end);
      };
      this.watchForSilence(watchdog.signal, () => lastEventAt, (silentMs) => finish({ kind: "silent", silentMs }));
      const onAbort = () => finish({ kind: "aborted" });
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      const span = WATCH_TIMEOUT_MAX_S - WATCH_TIMEOUT_MIN_S;
      const timeoutSeconds = WATCH_TIMEOUT_MIN_S + Math.floor(this.random() * span);
      const onEvent = (type: string, obj: unknown) => {
        if (ended) return; // a late event of a watch we already left must not touch the cache
        events++;
        lastEventAt = this.clock();
        const end = this.apply(type, obj);
        if (end) finish(end);
      };
      const onDone = (err: unknown) => {
        if (!err) return finish({ kind: "closed", events, durationMs: this.clock() - startedAt });
        if (apiStatusCode(err) === 410) return finish({ kind: "expired", detail: "HTTP 410" });
        finish({ kind: "error", err });
      };
      this.transport.watch({ resourceVersion: this.resourceVersion ?? "", timeoutSeconds }, onEvent, onDone).then(
        (h) => {
          handle = h;
          if (ended) h.abort();
        },
        (err: unknown) => finish({ kind: "error", err }),
      );
    });
  }

  /**
   * Calls `onSilent` once no event came for the inactivity timeout, unless `signal` aborts
   * first. One timer per watch, re-armed for the remainder when it finds events since, so a
   * busy watch costs nothing per event but a clock read.
   */
  private watchForSilence(signal: AbortSignal, lastEventAt: () => number, onSilent: (silentMs: number) => void): void {
    const timeoutMs = this.o.watchInactivityTimeoutMs ?? WATCH_INACTIVITY_TIMEOUT_MS;
    const arm = (ms: number): void => {
      this.delay(ms, signal).then(() => {
        const silentMs = this.clock() - lastEventAt();
        if (silentMs >= timeoutMs) onSilent(silentMs);
        else arm(timeoutMs - silentMs);
      }, () => {
        // Aborted: the watch ended first.
      });
    };
    arm(timeoutMs);
  }

  /** Applies one watch event to the cache; returns how the watch ends, if it must. */
  private apply(type: string, raw: unknown): WatchEnd | undefined {
    const rv = (raw as KubernetesObject | undefined)?.metadata?.resourceVersion;
    switch (type) {
      case "ADDED":
      case "MODIFIED": {
        if (rv) this.resourceVersion = rv;
        const obj = this.transform(raw as KubernetesObject);
        const key = keyOfObj(obj);
        const old = this.cache.get(key);
        this.cache.set(key, obj);
        if (!old) this.emit("add", obj);
        else if (old.metadata?.resourceVersion !== rv) this.emit("update", obj, old);
        return undefined;
      }
      case "DELETED": {
        if (rv) this.resourceVersion = rv;
        const obj = this.transform(raw as KubernetesObject);
        const key = keyOfObj(obj);
        const old = this.cache.get(key);
        this.cache.delete(key);
        this.emit("delete", obj ?? old);
        return undefined;
      }
      case "BOOKMARK":
        // Only metadata.resourceVersion is meaningful; it keeps a quiet watch's position fresh
        // so that a restart resumes inside the server's history window.
        if (rv) this.resourceVersion = rv;
        return undefined;
      case "ERROR": {
        const status = (raw ?? {}) as WatchStatus;
        if (status.code === 410 || status.reason === "Expired" || status.reason === "Gone") {
          return { kind: "expired", detail: status.message ?? status.reason ?? "410" };
        }
        if (isTooLargeResourceVersion(status)) {
          // Our resourceVersion is ahead of the server's (etcd restored from a backup, or a
          // lagging cache): re-watching from it would fail forever; client-go relists too.
          return { kind: "expired", detail: status.message ?? "resourceVersion too large" };
        }
        const err = new KubeApiError(status.code ?? 500, status.message ?? "watch ERROR event", status.reason, `WATCH ${this.o.path}`);
        return { kind: "error", err };
      }
      default:
        this.log(`informer ${this.o.resource}: ignoring watch event of unknown type ${JSON.stringify(type)}`);
        return undefined;
    }
  }

  private emit(type: ChangeType, obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        // A handler's bug must not stop the informer for every other handler.
        this.log(`informer ${this.o.resource}: change handler threw on ${type} ${keyOfObj(obj)}: ${describe(err)[1]}`);
      }
    }
  }
}

const keyOf = (namespace: string | undefined, name: string) => `${namespace ?? ""}/${name}`;
const keyOfObj = (o: KubernetesObject) => keyOf(o.metadata?.namespace, o.metadata?.name ?? "");

interface WatchStatus {
  code?: number;
  reason?: string;
  message?: string;
  details?: { causes?: Array<{ reason?: string }> };
}

function isTooLargeResourceVersion(status: WatchStatus): boolean {
  return (status.details?.causes ?? []).some((c) => c.reason === "ResourceVersionTooLarge")
    || /too large resource version/i.test(status.message ?? "");
}

function describe(err: unknown): [RestartReason, string] {
  if (err instanceof Error && err.name === "TimeoutError") {
    return ["timeout", "watch stalled: no byte within the inactivity timeout"];
  }
  const code = apiStatusCode(err);
  const text = err instanceof Error ? err.message : String(err);
  return ["error", code ? `HTTP ${code}: ${text}` : text];
}
