import type { Socket } from "phoenix";
import { afterAll, afterEach, beforeAll } from "vitest";
import { AdminServer } from "../../sidecar/admin/admin-server.js";
import { createMetrics } from "../../sidecar/admin/metrics.js";
import type { TopicGroupSpec } from "../../sidecar/ledger/topic-groups.js";
import { DEFAULT_LIMITS, type Limits } from "../../sidecar/limits/admission.js";
import { Sidecar, type Stats } from "../../sidecar/sidecar.js";
import { startPhoenixServer, type PhoenixServer } from "./phoenix-server/index.js";
import { waitFor } from "./wait.js";

export { inBatches, waitFor } from "./wait.js";

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

export interface SidecarOptions {
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
}

export async function startSidecar(opts: SidecarOptions): Promise<SidecarHandle> {
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

/** How {@link usePhoenixAppAndSidecar} opens an official phoenix client socket. */
export interface ClientOptions {
  vsn?: "1.0.0" | "2.0.0";
  /** The app's socket path (default /socket; /socketz offers permessage-deflate). */
  path?: string;
  compress?: boolean;
}

/** The Phoenix test app and a sidecar in front of it, for the tests of one describe block. */
export interface PhoenixAppAndSidecar {
  /** The Phoenix test app (started once for the block). */
  readonly app: PhoenixServer;
  /** The sidecar of the running test (see {@link startSidecar}). */
  readonly sidecar: SidecarHandle;
  /** Starts this test's sidecar in front of the app; it is closed after the test. */
  startSidecar(opts?: Omit<SidecarOptions, "upstream">): Promise<SidecarHandle>;
  /** An official phoenix client socket through this test's sidecar, connected; disconnected after the test. */
  client(opts?: ClientOptions): Promise<Socket>;
}

/**
 * The set-up that the integration tests of a Phoenix app behind a sidecar share, registered as
 * hooks of the calling describe block: the Phoenix test app once for the block, a sidecar per
 * test, official phoenix client sockets through it. After each test every socket opened with
 * `client()` disconnects, the sidecar closes and the app is seen to drop every channel, so a
 * test leaves nothing behind for the next; after the block the app closes. The phoenix client
 * is loaded on first use: long-poll tests, which must not load it, can import this module.
 */
export function usePhoenixAppAndSidecar(): PhoenixAppAndSidecar {
  let app: PhoenixServer | undefined;
  let sidecar: SidecarHandle | undefined;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterEach(async () => {
    sockets.splice(0).forEach((s) => s.disconnect());
    await sidecar?.close();
    sidecar = undefined;
    if (app !== undefined) await waitFor(() => app!.count(), (n) => n === 0, "the app to drop test channels");
  });
  afterAll(async () => {
    await app?.close();
  });
  const fixture: PhoenixAppAndSidecar = {
    get app(): PhoenixServer {
      if (app === undefined) throw new Error("the Phoenix app starts in beforeAll: use it inside a test");
      return app;
    },
    get sidecar(): SidecarHandle {
      if (sidecar === undefined) throw new Error("no sidecar yet: call startSidecar() in the test first");
      return sidecar;
    },
    async startSidecar(opts = {}) {
      sidecar = await startSidecar({ ...opts, upstream: fixture.app.url });
      return sidecar;
    },
    async client(opts = {}) {
      const { connected, phoenixSocket } = await import("./phoenix-client.js");
      const socket = phoenixSocket(fixture.sidecar.url, opts);
      sockets.push(socket);
      await connected(socket);
      return socket;
    },
  };
  return fixture;
}
