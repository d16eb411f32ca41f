import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { startSidecar } from "../../support/sidecar-harness.js";
import { metricValue } from "../../support/stall-probe.js";

describe("GET /metrics", () => {
  it.runIf(process.platform === "linux")("reports connmeter_process_open_fds once with the process's fd count (listed in the background, off the event loop)", async () => {
    const front = await startSidecar({ upstream: "http://127.0.0.1:1" });
    try {
      const page = await (await fetch(`${front.adminUrl}/metrics`)).text();
      expect(page.match(/^# TYPE connmeter_process_open_fds gauge$/gm)).toHaveLength(1);
      const fds = metricValue(page, "connmeter_process_open_fds");
      // this test process is the sidecar's: its fd count, give or take the ones the scrape opened
      expect(Math.abs(fds - readdirSync("/proc/self/fd").length)).toBeLessThanOrEqual(8);
    } finally {
      await front.close();
    }
  });
});
