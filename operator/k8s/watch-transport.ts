// The informer's real transport: a plain GET for list pages and client-node's Watch for the
// stream, with Watch's inactivity timer moved out of the way of healthy quiet watches.
import { Watch, type KubernetesObject } from "@kubernetes/client-node";
import type { InformerOptions, InformerTransport } from "./informer.js";
import { kubeRequest } from "./request.js";

/**
 * How long past the server's own timeout a silent stream is trusted. client-node 2.0.x aborts a
 * watch after `Watch.requestTimeoutMs` (default 30 s) without a byte, and a quiet collection can
 * go longer than that without one; the server ends every healthy watch at timeoutSeconds, so
 * silence beyond timeoutSeconds + this margin means a dead connection (e.g. a vanished NAT entry).
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
      // but healthy watch (a namespace with no pod churn) would restart every 30 s. Keep the
      // timer as a stall detector only, past the point where the server ends the watch itself.
      // 2.0.1 declares the field private in its .d.ts, though it is a plain instance property
      // meant to be tuned (kubernetes-client/javascript#3022); test/e2e/operator-k8s.test.ts
      // measures that the raised value is honoured (a quiet watch kept past 30 s).
      (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = query.timeoutSeconds * 1000 + WATCH_STALL_MARGIN_MS;
      const params = { ...selectors, allowWatchBookmarks: true, resourceVersion: query.resourceVersion || undefined, timeoutSeconds: query.timeoutSeconds };
      const controller = await watch.watch(o.path, params, (type: string, obj: unknown) => onEvent(type, obj), onDone);
      return { abort: () => controller.abort() };
    },
  };
}
