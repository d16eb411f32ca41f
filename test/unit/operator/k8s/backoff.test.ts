import { afterEach, describe, expect, it, vi } from "vitest";
import { Backoff, realDelay } from "../../../../operator/k8s/backoff.js";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("Backoff", () => {
  it("doubles from 800 ms to the 30 s cap without jitter", () => {
    let now = 0;
    const b = new Backoff({ clock: () => now, random: () => 0 });
    const seq = Array.from({ length: 8 }, () => { now += 1000; return b.next(); });
    expect(seq).toEqual([800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
  });

  it("adds up to one full step of jitter and still never exceeds the cap", () => {
    const now = 0;
    const b = new Backoff({ clock: () => now, random: () => 0.999 });
    expect(b.next()).toBe(1599);
    for (let i = 0; i < 10; i++) expect(b.next()).toBeLessThanOrEqual(30_000);
  });

  it("starts again from 800 ms after two minutes without a failure", () => {
    let now = 0;
    const b = new Backoff({ clock: () => now, random: () => 0 });
    for (let i = 0; i < 5; i++) b.next();
    now += 119_999;
    expect(b.next()).toBe(25600);
    now += 120_000;
    expect(b.next()).toBe(800);
  });

  it("measures the quiet period on a monotonic clock by default: a wall-clock jump resets nothing", () => {
    let wall = Date.UTC(2026, 0, 1);
    vi.spyOn(Date, "now").mockImplementation(() => wall);
    const b = new Backoff({ random: () => 0 });
    expect(b.next()).toBe(800);
    wall += 180_000; // NTP steps the wall clock forward three minutes between two failures
    expect(b.next()).toBe(1600);
  });

  it("realDelay rejects when aborted and leaves no timer behind", async () => {
    const ac = new AbortController();
    const p = realDelay(60_000, ac.signal);
    ac.abort(new Error("stop"));
    await expect(p).rejects.toThrow("stop");
  });
});
