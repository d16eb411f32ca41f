import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";
import { metricValue, runDeflateBomb, runMetricsStorm, startStallApp, type StallApp } from "../../support/stall-probe.js";

// What is asserted is progress, not time: other sockets and /healthz keep getting answers
// while the bomb is inflated and while 500 scrapes run (the unbounded code answered nothing for
// ~6 s and ~0.8 s). How long the worst wait was is a figure of `make bench` (bench/stall-bench.ts),
// never a bound here: a loaded machine would fail a timed assertion for reasons of its own.

describe("no single client stalls the others", () => {
  let app: StallApp;
  let sidecar: SidecarHandle;

  beforeAll(async () => {
    app = await startStallApp();
    sidecar = await startSidecar({ upstream: app.url });
  });
  afterAll(async () => {
    await sidecar?.close();
    await app?.close();
  });

  it("a 1 GiB deflate bomb in one message: another socket keeps getting echoes while it is inflated, every byte reaches the app, and the message is reported uninspected", async () => {
    const result = await runDeflateBomb(sidecar.url, sidecar.adminUrl, app, 1024 ** 3);
    console.log(`deflate bomb (${result.frameBytes} wire bytes → 1 GiB): worst echo ${result.echoMaxMs.toFixed(0)} ms over ${result.echoRoundTripsDuring} round trips during it, worst /healthz ${result.healthzMaxMs.toFixed(0)} ms`);
    expect(result.relayedAll).toBe(true);
    expect(result.uninspected).toBe(1);
    // A held event loop would let one round trip through at its end; a sliced inflate, many.
    expect(result.echoRoundTripsDuring).toBeGreaterThan(10);
    expect(result.uninspectedConnections).toBe(1); // flagged while it was open...
    await waitFor(sidecar.stats, (s) => s.uninspectedConnections === 0, "/stats to drop the closed bomb socket");
    const page = () => fetch(`${sidecar.adminUrl}/metrics`).then((r) => r.text());
    await waitFor(page, (p) => metricValue(p, "connmeter_connections_uninspected") === 0, "the bomb's socket to close"); // ...and no longer once closed
  });

  it("500 concurrent GET /metrics: scrapes share one render and the data path keeps moving", async () => {
    const result = await runMetricsStorm(sidecar.url, sidecar.adminUrl, 500);
    console.log(`500 concurrent scrapes: worst echo ${result.echoMaxMs.toFixed(0)} ms, worst /healthz ${result.healthzMaxMs.toFixed(0)} ms, ${result.failedScrapes} failed`);
    expect(result.failedScrapes).toBe(0);
    expect(result.echoRoundTripsDuring).toBeGreaterThan(0);
  });
});
