import type { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { CachedMetrics } from "../../../../sidecar/admin/metrics.js";

/** A registry stand-in that counts renders and resolves each when told to. */
function slowRegistry() {
  let renders = 0;
  const pending: (() => void)[] = [];
  const registry = {
    contentType: "text/plain; version=0.0.4",
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const n = ++renders;
        pending.push(() => (n === 3 ? reject(new Error("render failed")) : resolve(`page ${n}\n`)));
      }),
  } as unknown as Registry;
  return { registry, renders: () => renders, finish: () => pending.splice(0).forEach((f) => f()) };
}

describe("CachedMetrics", () => {
  it("serves 500 concurrent scrapes from one render, then the same page until it is a second old", async () => {
    const r = slowRegistry();
    let now = 0;
    const cache = new CachedMetrics(r.registry, 1000, () => now);
    const scrapes = Array.from({ length: 500 }, () => cache.render());
    expect(r.renders()).toBe(1);
    r.finish();
    expect(new Set(await Promise.all(scrapes))).toEqual(new Set(["page 1\n"]));
    now = 999;
    expect(await cache.render()).toBe("page 1\n");
    expect(r.renders()).toBe(1);
    now = 1000;
    const next = cache.render();
    r.finish();
    expect(await next).toBe("page 2\n");
    expect(cache.contentType).toBe("text/plain; version=0.0.4");
  });

  it("does not keep a failed render: the next scrape tries again", async () => {
    const r = slowRegistry();
    let now = 0;
    const cache = new CachedMetrics(r.registry, 1000, () => now);
    for (const expected of ["page 1\n", "page 2\n"]) {
      const p = cache.render();
      r.finish();
      expect(await p).toBe(expected);
      now += 1000;
    }
    const failing = cache.render();
    r.finish();
    await expect(failing).rejects.toThrow("render failed");
    const retry = cache.render();
    expect(r.renders()).toBe(4);
    r.finish();
    expect(await retry).toBe("page 4\n");
  });
});
