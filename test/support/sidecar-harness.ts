import { AdminServer } from "../../sidecar/admin/admin-server.js";
import { createMetrics } from "../../sidecar/admin/metrics.js";
import type { TopicGroupSpec } from "../../sidecar/ledger/topic-groups.js";
import { DEFAULT_LIMITS, type Limits } from "../../sidecar/limits/admission.js";
import { Sidecar, type Stats } from "../../sidecar/sidecar.js";

export { waitFor } from "./wait.js";

/** A sidecar running in this process on ephemeral loopback ports. */
export interface SidecarHandle {
  sidecar: Sidecar;
  /** http://127.0.0.1:<public port> */
  url: string;
  /** http://127.0.0.1:<admin port> */
  adminUrl: string;
  stats(): Promise<Stats>;
  close(): Promise<void>;
}

export async function startSidecar(opts: {
  upstream: string;
  limits?: Partial<Limits>;
  topics?: TopicGroupSpec[];
  adminToken?: string;
  longpollTimeoutSeconds?: number;
  log?: (message: string) => void;
  maxHandshakes?: number;
  handshakeTimeoutSeconds?: number;
  awaitBudgetSeconds?: number;
  /** The sidecar's clock (ms); default Date.now. */
  now?: () => number;
}): Promise<SidecarHandle> {
  const sidecar = new Sidecar({
    listen: { host: "127.0.0.1", port: 0 },
    upstream: opts.upstream,
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    topics: opts.topics ?? [],
    maxTopicLabels: 100,
    longpollTimeoutSeconds: opts.longpollTimeoutSeconds ?? 20,
    log: opts.log,
    maxHandshakes: opts.maxHandshakes,
    handshakeTimeoutSeconds: opts.handshakeTimeoutSeconds,
    awaitBudgetSeconds: opts.awaitBudgetSeconds,
    now: opts.now,
  });
  const admin = new AdminServer(sidecar, createMetrics(sidecar), opts.adminToken);
  const pub = await sidecar.start();
  const adm = await admin.start({ host: "127.0.0.1", port: 0 });
  const adminUrl = `http://127.0.0.1:${adm.port}`;
  return {
    sidecar,
    url: `http://127.0.0.1:${pub.port}`,
    adminUrl,
    // With a token set the sidecar requires it for GET /stats.
    stats: async () => (await (await fetch(`${adminUrl}/stats`, { headers: opts.adminToken ? { authorization: `Bearer ${opts.adminToken}` } : {} })).json()) as Stats,
    close: async () => {
      await sidecar.close();
      await admin.close();
    },
  };
}


/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inBatches<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
