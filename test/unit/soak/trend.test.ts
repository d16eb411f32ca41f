import { describe, expect, it } from "vitest";
import { BUSY_RUN, WARMUP_SAMPLES, cpuTrend, memoryTrend, trendOk } from "../../soak/trend.js";

const MIB = 1024 * 1024;
const warm = (v: number) => Array.from({ length: WARMUP_SAMPLES }, () => v);
const idle = (n: number) => Array.from({ length: n }, () => 5);

describe("memoryTrend", () => {
  it("calls a heap that saws up and down around one level flat", () => {
    const heap = [...warm(40 * MIB), ...Array.from({ length: 60 }, (_, i) => (30 + (i % 5) * 3) * MIB)];
    expect(memoryTrend(heap)).toBe("flat");
  });

  it("calls memory that climbs steadily growing", () => {
    const rss = [...warm(130 * MIB), ...Array.from({ length: 30 }, (_, i) => (150 + 4 * i) * MIB)];
    expect(memoryTrend(rss)).toBe("growing");
  });

  it("does not judge a life too short to have a trend", () => {
    expect(memoryTrend([...warm(30 * MIB), 90 * MIB, 200 * MIB])).toBe("short");
    expect(trendOk("short")).toBe(true);
  });
});

describe("cpuTrend", () => {
  it("calls a replica busy when it stays runnable for 15 s, even when a crowded machine gives it half a core", () => {
    const cpu = [2, 3, 45, 50, 48];
    const runnable = [3, 4, ...Array.from({ length: BUSY_RUN }, () => 99)];
    expect(cpuTrend(cpu, runnable)).toBe("busy");
    expect(trendOk("busy")).toBe(false);
  });

  it("does not call a startup burst busy", () => {
    const cpu = [95, 40, 95, ...idle(30)];
    expect(cpuTrend(cpu, [99, 45, 99, ...idle(30)])).toBe("flat");
  });

  it("calls a replica whose CPU keeps climbing growing", () => {
    const cpu = [...warm(3), ...Array.from({ length: 30 }, (_, i) => 2 + i * 2.5)];
    expect(cpuTrend(cpu, idle(cpu.length))).toBe("growing");
  });
});
