import net from "node:net";
import { performance } from "node:perf_hooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createMetrics, HANDLE_TYPES_MAX_AGE_MS } from "../../../../sidecar/admin/metrics.js";
import { DEFAULT_LIMITS } from "../../../../sidecar/limits/admission.js";
import { Sidecar } from "../../../../sidecar/sidecar.js";

function sidecar(): Sidecar {
  return new Sidecar({
    listen: { host: "127.0.0.1", port: 0 },
    upstream: "http://127.0.0.1:1",
    limits: DEFAULT_LIMITS,
    topics: [],
    maxTopicLabels: 100,
    longpollTimeoutSeconds: 20,
  });
}

/** The value of a series in a Prometheus text page (NaN when absent). */
function value(page: string, series: string): number {
  const line = page.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

const activeHandles = (): unknown[] => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();

describe("the nodejs_active_handles and nodejs_active_resources gauges", () => {
  afterEach(() => vi.restoreAllMocks());

  it("list the resources once per render and the handles' owners at most once a minute, with prom-client's names, types and labels", async () => {
    const s = sidecar();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => new Promise<net.Socket>((resolve) => {
        const c = net.connect(port, "127.0.0.1", () => resolve(c));
      })),
    );
    try {
      let now = 1_000_000;
      vi.spyOn(performance, "now").mockImplementation(() => now);
      const registry = createMetrics(s);
      const owners = vi.spyOn(process as unknown as { _getActiveHandles(): unknown[] }, "_getActiveHandles");
      const resources = vi.spyOn(process, "getActiveResourcesInfo");
      const page = await registry.metrics();
      const handlesNow = activeHandles().length;
      expect(resources).toHaveBeenCalledTimes(1);
      expect(owners).toHaveBeenCalledTimes(2); // the render's one, and ours just above
      for (const name of ["connmeter_nodejs_active_handles", "connmeter_nodejs_active_handles_total", "connmeter_nodejs_active_resources", "connmeter_nodejs_active_resources_total"]) {
        expect(page.match(new RegExp(`^# TYPE ${name} gauge$`, "gm"))).toHaveLength(1);
      }
      // at least the 20 clients and the server, grouped as prom-client groups them (by constructor name, by resource type)
      expect(value(page, 'connmeter_nodejs_active_handles{type="Socket"}')).toBeGreaterThanOrEqual(20);
      expect(value(page, 'connmeter_nodejs_active_handles{type="Server"}')).toBeGreaterThanOrEqual(1);
      expect(value(page, 'connmeter_nodejs_active_resources{type="TCPSocketWrap"}')).toBeGreaterThanOrEqual(20);
      expect(value(page, "connmeter_nodejs_active_resources_total")).toBeGreaterThanOrEqual(21);
      // the total of handles (resources less requests and timers) is the count of handles
      expect(Math.abs(value(page, "connmeter_nodejs_active_handles_total") - handlesNow)).toBeLessThanOrEqual(2);

      now += HANDLE_TYPES_MAX_AGE_MS - 1;
      await registry.metrics();
      expect(resources).toHaveBeenCalledTimes(2); // every render
      expect(owners).toHaveBeenCalledTimes(2); // not yet
      now += 1;
      await registry.metrics();
      expect(owners).toHaveBeenCalledTimes(3);
    } finally {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await s.close();
    }
  });
});
