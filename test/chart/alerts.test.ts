// The chart's alerts and dashboard: `promtool check rules` and `promtool test rules` (one test per
// alert in alerts.promtool.yaml), and every metric they query exists in the sidecar's or the
// operator's metrics source (so a renamed metric breaks this test, not a production alert).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findRepoRoot } from "../env/config.js";
import { CHART_DIR, dashboardExprs, findPromtool, promtool, skipWithoutTool } from "../env/helm.js";

const root = findRepoRoot();
const ALERTS = join(CHART_DIR, "files/alerts.yaml");
const DASHBOARD = join(CHART_DIR, "dashboards/connmeter.json");
/** promtool test files of the rules; every alert is tested in one of them. */
const PROMTOOL_FILES = ["alerts.promtool.yaml", "usage.promtool.yaml", "protection.promtool.yaml"];

/** Metric names the code registers (name: "connmeter_..." in the metrics sources). */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  for (const file of ["sidecar/admin/metrics.ts", "operator/admin/metrics.ts"]) {
    for (const m of readFileSync(join(root, file), "utf8").matchAll(/["'](connmeter_[a-z_]+)["']/g)) names.add(m[1]!);
  }
  return names;
}

/** connmeter_* names a PromQL text uses, histogram/summary suffixes taken off. */
function queried(text: string): string[] {
  return [...new Set([...text.matchAll(/\bconnmeter_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, "")))];
}

describe("the connmeter alerts and dashboard", () => {
  it("query only metrics the sidecar and the operator export", () => {
    const exported = exportedMetrics();
    expect(exported.size).toBeGreaterThan(20);
    const alertMetrics = queried(readFileSync(ALERTS, "utf8"));
    const dashboardMetrics = dashboardExprs().flatMap((e) => queried(e.expr));
    expect([...alertMetrics, ...dashboardMetrics].filter((m) => !exported.has(m))).toEqual([]);
  });

  it("has a dashboard whose every panel queries something, with unique ids", () => {
    const d = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { uid: string; panels: { id: number; type: string; title: string; targets?: { expr: string }[] }[] };
    expect(d.uid).toBe("connmeter");
    const panels = d.panels.filter((p) => p.type !== "row");
    expect(panels.length).toBeGreaterThanOrEqual(15);
    for (const p of panels) expect(p.targets?.length, p.title).toBeGreaterThan(0);
    expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
  });

  describe.skipIf(skipWithoutTool("promtool alert tests (test/chart/alerts.test.ts)", findPromtool()))("with promtool", () => {
    it("passes promtool check rules", () => {
      const r = promtool(["check", "rules", ALERTS]);
      expect(r.output).toMatch(/SUCCESS: \d+ rules found/);
      expect(r.status, r.output).toBe(0);
    });

    it("passes promtool test rules: each alert fires on the series meant to fire it and on no other", () => {
      const r = promtool(["test", "rules", "alerts.promtool.yaml"], join(root, "test/chart"));
      expect(r.status, r.output).toBe(0);
      expect(r.output).toMatch(/SUCCESS/);
      // every alert of the file has a test
      const alerts = [...readFileSync(ALERTS, "utf8").matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
      const tests = PROMTOOL_FILES.map((f) => readFileSync(join(root, "test/chart", f), "utf8")).join("\n");
      expect(alerts.filter((a) => !tests.includes(`alertname: ${a}`))).toEqual([]);
    });

    // --- usage and protection (issue 18) ---
    it.each(["usage.promtool.yaml", "protection.promtool.yaml"])("passes promtool test rules %s (usage rules across a pod restart; flood alerts)", (file) => {
      const r = promtool(["test", "rules", file], join(root, "test/chart"));
      expect(r.status, r.output).toBe(0);
      expect(r.output).toMatch(/SUCCESS/);
    });

    it("tests every recording rule", () => {
      const records = [...readFileSync(ALERTS, "utf8").matchAll(/- record: (\S+)/g)].map((m) => m[1]!);
      const tests = readFileSync(join(root, "test/chart/usage.promtool.yaml"), "utf8");
      expect(records.length).toBeGreaterThan(0);
      expect(records.filter((rec) => !tests.includes(`expr: ${rec}`))).toEqual([]);
    });
    // --- end usage and protection ---
  });
});
