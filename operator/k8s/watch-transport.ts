// The informer's real transport: a plain GET for list pages and client-node's Watch for the
// stream, with Watch's inactivity timer moved out of the way of healthy quiet watches.
import { Watch, type KubernetesObject } from "@kubernetes/client-node";
import { WATCH_INACTIVITY_TIMEOUT_MS, type InformerOptions, type InformerTransport } from "./informer.js";
import { kubeRequest } from "./request.js";

/**
 * How long past the informer's own inactivity timeout client-node's byte timer waits. The
 * informer notices a dead stream first (no event, no bookmark for WATCH_INACTIVITY_TIMEOUT_MS)
 * and says why; client-node's timer, which counts bytes, stays as a backstop.
 */
export const WATCH_STALL_MARGIN_MS = 30_000;

interface RawList<T> {
  items?: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/** The real transport: a plain GET for lists, client-node's Watch for watches. */
export function clientNodeTransport<T extends KubernetesObject>(o: InformerOptions): InformerTransport<T> {
  const selectors = { labelSelector: o.labelSelector, fieldSelector: o.fieldSelector };
  return {
    async list(query, signal) {
      // Raw JSON, not client-node's deserialized models: the token is `continue`, not `_continue`.
      const list = await kubeRequest<RawList<T>>(o.kc, {
        method: "GET", path: o.path, signal, query: { ...selectors, limit: query.limit, continue: query.continueToken },
      });
      return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "", continueToken: list.metadata?.continue || undefined };
    },
    async watch(query, onEvent, onDone) {
      const watch = new Watch(o.kc);
      // client-node 2.0.x aborts a watch after requestTimeoutMs (30 s) without a byte; a quiet
      // but healthy watch (a namespace with no pod churn, bookmarks about once a minute) would
      // restart every 30 s. Keep the timer as a backstop behind the informer's own detector.
      // 2.0.1 declares the field private in its .d.ts, though it is a plain instance property
      // meant to be tuned (kubernetes-client/javascript#3022); test/e2e/operator-k8s.test.ts
      // measures that the raised value is honoured (a quiet watch kept past 30 s).
      (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = (o.watchInactivityTimeoutMs ?? WATCH_INACTIVITY_TIMEOUT_MS) + WATCH_STALL_MARGIN_MS;
      const params = { ...selectors, allowWatchBookmarks: true, resourceVersion: query.resourceVersion || undefined, timeoutSeconds: query.timeoutSeconds };
      const controller = await watch.watch(o.path, params, (type: string, obj: unknown) => onEvent(type, obj), onDone);
      return { abort: () => controller.abort() };
    },
  };
}
