import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { startSidecar, type SidecarHandle } from "../../support/sidecar-harness.js";

const TOKEN = "ns-a-token";

describe("the admin port's reads with a token set", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle | undefined;
  const get = (path: string, token?: string) =>
    fetch(`${sidecar!.adminUrl}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
  });
  afterAll(async () => {
    await app?.close();
  });

  it("requires the bearer token for GET /stats and GET /config (topic names are tenants' data), answering 401 with the fix", async () => {
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN });
    for (const path of ["/stats", "/config"]) {
      const none = await get(path);
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: string }).error).toMatch(/Authorization: Bearer .*connmeter-admin-token/);
      expect((await get(path, "another-namespaces-token")).status).toBe(401);
      expect((await get(path, TOKEN)).status).toBe(200);
    }
  });

  it("keeps /metrics, /healthz and /readyz open: Prometheus and the kubelet carry no token", async () => {
    sidecar = await startSidecar({ upstream: app.url, adminToken: TOKEN });
    for (const path of ["/metrics", "/healthz", "/readyz"]) expect((await get(path)).status).toBe(200);
  });

  it("serves GET /stats and GET /config to anyone when no token is configured (nothing to guard them with)", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    for (const path of ["/stats", "/config"]) expect((await get(path)).status).toBe(200);
  });
});
