import { describe, expect, it } from "vitest";
import { EventRecorder, eventName, truncateUtf8, type EventApi } from "../../../../operator/k8s/events.js";
import { KubeApiError } from "../../../../operator/k8s/request.js";
import { FakeTime } from "./fake-time.js";

class FakeEvents implements EventApi {
  created: Array<{ ns: string; event: Record<string, unknown> }> = [];
  patches: Array<{ name: string; patch: { series?: { count: number; lastObservedTime: string } } }> = [];
  failures: unknown[] = [];
  async create(ns: string, event: object) {
    const f = this.failures.shift();
    if (f) throw f;
    this.created.push({ ns, event: event as Record<string, unknown> });
    return { metadata: { name: (event as { metadata: { name: string } }).metadata.name } };
  }
  async patch(_ns: string, name: string, patch: object) {
    const f = this.failures.shift();
    if (f) throw f;
    this.patches.push({ name, patch });
  }
}

const pod = { apiVersion: "v1", kind: "Pod", namespace: "ns", name: "p1", uid: "u1" };

function recorder(api: FakeEvents, time = new FakeTime()) {
  const lines: string[] = [];
  const rec = new EventRecorder({ kc: undefined as never, reportingController: "connmeter.io/operator", reportingInstance: "op-1", api, clock: time.clock, delay: time.delay, log: (l) => lines.push(l) });
  return { rec, lines, time };
}

describe("EventRecorder", () => {
  it("creates an events.k8s.io/v1 Event with eventTime, regarding and the reporting fields", async () => {
    const api = new FakeEvents();
    const { rec, time } = recorder(api);
    time.now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    rec.record(pod, "Warning", "ScrapeFailed", "Scrape", "connection refused");
    await rec.flush();
    expect(api.created).toHaveLength(1);
    expect(api.created[0]!.ns).toBe("ns");
    expect(api.created[0]!.event).toMatchObject({
      apiVersion: "events.k8s.io/v1", kind: "Event", eventTime: "2026-01-02T03:04:05.678000Z", type: "Warning",
      reason: "ScrapeFailed", action: "Scrape", note: "connection refused",
      reportingController: "connmeter.io/operator", reportingInstance: "op-1",
      regarding: { apiVersion: "v1", kind: "Pod", namespace: "ns", name: "p1", uid: "u1" },
      metadata: { namespace: "ns", name: expect.stringMatching(/^p1\.[0-9a-f]+$/) },
    });
    expect(api.created[0]!.event).not.toHaveProperty("series");
  });

  it("turns a repeat within 6 minutes into a series patch, and a later one into a new Event", async () => {
    const api = new FakeEvents();
    const { rec, time } = recorder(api);
    rec.record(pod, "Warning", "ScrapeFailed", "Scrape", "a");
    await rec.flush();
    await time.advance(60_000);
    rec.record(pod, "Warning", "ScrapeFailed", "Scrape", "b (note is not part of the key)");
    await rec.flush();
    expect(api.created).toHaveLength(1);
    expect(api.patches).toEqual([{ name: api.created[0]!.event.metadata && (api.created[0]!.event.metadata as { name: string }).name, patch: { series: { count: 2, lastObservedTime: "1970-01-01T00:01:00.000000Z" } } }]);
    await time.advance(6 * 60_000);
    rec.record(pod, "Warning", "ScrapeFailed", "Scrape", "c");
    await rec.flush();
    expect(api.created).toHaveLength(2);
    rec.record(pod, "Normal", "ScrapeFailed", "Scrape", "other type: other series");
    await rec.flush();
    expect(api.created).toHaveLength(3);
  });

  it("folds repeats that arrive while a write is in flight into one patch", async () => {
    const api = new FakeEvents();
    const { rec } = recorder(api);
    for (let i = 0; i < 5; i++) rec.record(pod, "Normal", "ScaledUp", "Scale", "x");
    await rec.flush();
    expect(api.created).toHaveLength(1);
    expect(api.patches.map((p) => p.patch.series?.count)).toEqual([5]);
  });

  it("never throws; retries server errors, drops invalid Events with a log line", async () => {
    const api = new FakeEvents();
    const { rec, lines, time } = recorder(api);
    api.failures = [new Error("ECONNREFUSED"), new KubeApiError(503, "unavailable", "ServiceUnavailable", "POST")];
    rec.record(pod, "Normal", "ScaledUp", "Scale", "x");
    const flushed = rec.flush();
    await time.advance(5_000);
    await flushed;
    expect(api.created).toHaveLength(1);
    api.failures = [new KubeApiError(422, "invalid", "Invalid", "POST")];
    expect(() => rec.record({ ...pod, name: "p2" }, "Normal", "ScaledUp", "Scale", "x")).not.toThrow();
    await rec.flush();
    expect(api.created).toHaveLength(1);
    expect(lines.at(-1)).toMatch(/could not write ScaledUp for Pod ns\/p2 \(attempt 1\): .*invalid/);
  });

  it("creates a fresh Event when the series' Event was deleted", async () => {
    const api = new FakeEvents();
    const { rec } = recorder(api);
    rec.record(pod, "Normal", "ScaledUp", "Scale", "x");
    await rec.flush();
    api.failures = [new KubeApiError(404, "not found", "NotFound", "PATCH")];
    rec.record(pod, "Normal", "ScaledUp", "Scale", "x");
    await rec.flush();
    expect(api.created).toHaveLength(2);
  });

  it("keeps at most maxSeries series in memory", async () => {
    const api = new FakeEvents();
    const time = new FakeTime();
    const rec = new EventRecorder({ kc: undefined as never, reportingController: "c", reportingInstance: "i", api, clock: time.clock, delay: time.delay, maxSeries: 2, log: () => undefined });
    for (const name of ["a", "b", "c"]) rec.record({ ...pod, name }, "Normal", "R", "A", "n");
    await rec.flush();
    rec.record({ ...pod, name: "a" }, "Normal", "R", "A", "n"); // forgotten: a new Event
    await rec.flush();
    expect(api.created).toHaveLength(4);
    expect(api.patches).toHaveLength(0);
  });

  it("cuts notes to 1024 bytes of UTF-8 without splitting a character, and names like client-go", () => {
    const cut = truncateUtf8("é".repeat(1000), 1024);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(1024);
    expect(cut.endsWith("…")).toBe(true);
    expect(truncateUtf8("short", 1024)).toBe("short");
    expect(eventName("p1", 1_000, 7)).toBe(`p1.${(1_000_000_007n).toString(16)}`);
    expect(eventName("x".repeat(300), 1, 0).length).toBeLessThanOrEqual(253);
  });
});
