import { describe, expect, it } from "vitest";
import { FairLimiter } from "../../../../operator/scrape/limiter.js";

function deferred() {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

describe("FairLimiter", () => {
  it.each([0, -1, 1.5, NaN])("refuses a concurrency of %s", (n) => {
    expect(() => new FairLimiter(n)).toThrow(/positive integer/);
  });

  it("runs at most max tasks at once and starts the waiting ones of one lane in order", async () => {
    const limiter = new FairLimiter(2);
    const gates = [deferred(), deferred(), deferred(), deferred()];
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const runs = gates.map((g, i) => limiter.run("ns/a", async () => {
      started.push(i);
      peak = Math.max(peak, ++running);
      await g.promise;
      running--;
      return i;
    }));
    await tick();
    expect(started).toEqual([0, 1]);
    gates[1]!.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.resolve();
    gates[2]!.resolve();
    gates[3]!.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
    expect(peak).toBe(2);
    expect([limiter.active, limiter.waiting]).toEqual([0, 0]);
  });

  it("frees the slot of a task that fails and passes its error on", async () => {
    const limiter = new FairLimiter(1);
    await expect(limiter.run("a", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(limiter.run("a", () => Promise.resolve("next"))).resolves.toBe("next");
  });

  it("starts another policy's 3 scrapes within the first wave of a dead policy's 1,000 timeouts, not after all of them", async () => {
    const limiter = new FairLimiter(64);
    const dead = Array.from({ length: 1000 }, () => deferred());
    const order: string[] = [];
    const deadRuns = dead.map((g, i) => limiter.run("ns/dead", async () => {
      order.push(`dead${i}`);
      await g.promise; // each ends only when the test lets it time out
    }).catch(() => undefined));
    await tick();
    const liveRuns = [0, 1, 2].map((i) => limiter.run("ns/live", async () => {
      order.push(`live${i}`);
    }));
    await tick();
    expect(order).toHaveLength(64); // every slot held by the dead pods
    // One timeout: the first wave of 64 dead calls fails.
    for (const g of dead.slice(0, 64)) g.reject(new Error("timeout"));
    await Promise.all(liveRuns);
    const live = order.map((o, i) => (o.startsWith("live") ? i : -1)).filter((i) => i >= 0);
    expect(live).toHaveLength(3);
    // The live policy's calls went in among the first slots freed (round-robin), far before the
    // 1,000 dead calls queued ahead of them.
    expect(Math.max(...live)).toBeLessThan(64 + 6);
    for (const g of dead.slice(64)) g.resolve();
    await Promise.all(deadRuns);
    expect([limiter.active, limiter.waiting]).toEqual([0, 0]);
  });
});
