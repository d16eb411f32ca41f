import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NamespaceTokens } from "../../../operator/k8s/tokens.js";
import { SidecarClient, type SidecarError } from "../../../operator/scrape/sidecar-client.js";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { startSidecar, type SidecarHandle } from "../../support/sidecar-harness.js";

/** Secret connmeter-admin-token per namespace, as the API server would answer a GET; "shared" has none. */
const SECRETS: Record<string, string | null> = { "tenant-a": "token-of-a", "tenant-b": "token-of-b", shared: null };

describe("tokens per namespace, against two real sidecars", () => {
  let app: PhoenixServer;
  let a: SidecarHandle;
  let b: SidecarHandle;
  let c: SidecarHandle;
  let client: SidecarClient;
  const port = (h: SidecarHandle) => Number(new URL(h.adminUrl).port);
  const scope = (namespace: string) => ({ namespace, policy: `${namespace}/chat` });

  beforeAll(async () => {
    app = await startPhoenixServer();
    a = await startSidecar({ upstream: app.url, adminToken: "token-of-a" });
    b = await startSidecar({ upstream: app.url, adminToken: "token-of-b" });
    c = await startSidecar({ upstream: app.url, adminToken: "operator-token" });
    const tokens = new NamespaceTokens({ read: (ns) => Promise.resolve(SECRETS[ns] ?? null), fallback: "operator-token" });
    client = new SidecarClient({ maxConcurrent: 8, tokens });
  });
  afterAll(async () => {
    client?.close();
    for (const h of [a, b, c]) await h?.close();
    await app?.close();
  });

  async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
    try {
      await p;
      return undefined;
    } catch (err) {
      return (err as SidecarError).code;
    }
  }

  it("sends each sidecar its own namespace's token: GET /stats and PUT /config succeed", async () => {
    expect(await client.stats("127.0.0.1", port(a), 2000, scope("tenant-a"))).toMatchObject({ connections: 0 });
    expect(await client.stats("127.0.0.1", port(b), 2000, scope("tenant-b"))).toMatchObject({ connections: 0 });
    await client.pushConfig("127.0.0.1", port(b), { connectionBudget: 3, ttlSeconds: 30 }, 2000, scope("tenant-b"));
    expect(b.sidecar.admission.current.connectionBudget).toBe(3);
  });

  it("a token of one namespace is refused by the sidecars of another: no reads, no budgets pushed", async () => {
    // A pod of tenant-a that tries to act on tenant-b's sidecar carries tenant-a's token.
    expect(await codeOf(client.stats("127.0.0.1", port(b), 2000, scope("tenant-a")))).toBe("http_401");
    expect(await codeOf(client.pushConfig("127.0.0.1", port(b), { connectionBudget: 0, ttlSeconds: 30 }, 2000, scope("tenant-a")))).toBe("http_401");
    expect(await codeOf(client.resetConfig("127.0.0.1", port(a), 2000, scope("tenant-b")))).toBe("http_401");
    expect(b.sidecar.admission.current.connectionBudget).not.toBe(0);
  });

  it("falls back to the operator's own token where a namespace has no Secret, and that token opens no tenant's sidecar", async () => {
    await client.pushConfig("127.0.0.1", port(c), { connectionBudget: 7, ttlSeconds: 30 }, 2000, scope("shared"));
    expect(c.sidecar.admission.current.connectionBudget).toBe(7);
    expect(await codeOf(client.stats("127.0.0.1", port(a), 2000, scope("shared")))).toBe("http_401");
  });
});
