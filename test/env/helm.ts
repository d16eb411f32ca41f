// The chart's tools for tests: helm (pinned, installed by `make helm` into the connmeter cache)
// and promtool (Debian's prometheus package, `make promtool`), found without installing anything,
// plus `helm template` parsed into objects. A missing tool is reported with the make target
// that installs it, so a test can skip loudly instead of passing silently.
import { loadAllYaml, type KubernetesObject } from "@kubernetes/client-node";

export type { KubernetesObject };
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { findRepoRoot } from "./config.js";

/** The chart under test. */
export const CHART_DIR = join(findRepoRoot(), "charts/connmeter");

function cacheDir(): string {
  return process.env.CONNMETER_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "connmeter");
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** A tool's path, or why it is missing and how to get it. */
export type Tool = { path: string; missing?: undefined } | { path?: undefined; missing: string };

/** helm: $CONNMETER_HELM, else the cache's bin/helm (`make helm`), else helm on PATH. */
export function findHelm(): Tool {
  const path = process.env.CONNMETER_HELM || [join(cacheDir(), "bin/helm")].find((p) => existsSync(p)) || onPath("helm");
  return path ? { path } : { missing: `helm not found ($CONNMETER_HELM, ${join(cacheDir(), "bin/helm")}, PATH): run \`make helm\`` };
}

/** promtool: $CONNMETER_PROMTOOL, else on PATH (`make promtool` installs Debian's prometheus). */
export function findPromtool(): Tool {
  const path = process.env.CONNMETER_PROMTOOL || onPath("promtool");
  return path ? { path } : { missing: "promtool not found ($CONNMETER_PROMTOOL, PATH): run `make promtool` (apt-get install prometheus)" };
}

/** prometheus server binary (same Debian package as promtool). */
export function findPrometheus(): Tool {
  const path = process.env.CONNMETER_PROMETHEUS || onPath("prometheus");
  return path ? { path } : { missing: "prometheus not found ($CONNMETER_PROMETHEUS, PATH): run `make promtool` (apt-get install prometheus)" };
}

/** Prints why a suite is skipped, loudly, once per suite; returns true when it must skip. */
export function skipWithoutTool(suite: string, tool: Tool): boolean {
  if (!tool.missing) return false;
  // `make test` brings every tool and sets this: there, a missing tool is a failure, not a skip.
  if (process.env.CONNMETER_REQUIRE_TOOLS === "1") throw new Error(`${suite}: ${tool.missing} (CONNMETER_REQUIRE_TOOLS=1)`);
  console.warn(`\n!!! SKIPPED: ${suite}: ${tool.missing}\n`);
  return true;
}

/** Runs helm; throws with its stderr on a non-zero exit. */
export function helm(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  const tool = findHelm();
  if (!tool.path) throw new Error(tool.missing);
  const res = spawnSync(tool.path, args, {
    input: opts.input, encoding: "utf8", timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, HELM_CACHE_HOME: join(cacheDir(), "helm/cache"), HELM_CONFIG_HOME: join(cacheDir(), "helm/config"), HELM_DATA_HOME: join(cacheDir(), "helm/data"), ...opts.env },
  });
  if (res.status !== 0) throw new Error(`helm ${args.join(" ")} exited ${res.status ?? res.signal}:\n${res.stderr}${res.stdout}`);
  return res.stdout;
}

/** `helm template` of the chart with `--set` values; the rendered text. */
export function helmTemplateText(sets: Record<string, string | number | boolean> = {}, extra: string[] = []): string {
  const args = ["template", "connmeter", CHART_DIR, "--namespace", "connmeter"];
  for (const [k, v] of Object.entries(sets)) args.push("--set", `${k}=${String(v)}`);
  return helm([...args, ...extra]);
}

/** `helm template` parsed into objects (empty documents dropped). */
export function helmTemplate(sets: Record<string, string | number | boolean> = {}, extra: string[] = []): KubernetesObject[] {
  return parseYamlDocs(helmTemplateText(sets, extra));
}

export function parseYamlDocs(text: string): KubernetesObject[] {
  return (loadAllYaml(text) as (KubernetesObject | null)[]).filter((d): d is KubernetesObject => d != null);
}

/** Runs promtool; stdout+stderr and the exit status. */
export function promtool(args: string[], cwd?: string): { status: number | null; output: string } {
  const tool = findPromtool();
  if (!tool.path) throw new Error(tool.missing);
  const res = spawnSync(tool.path, args, { encoding: "utf8", cwd, timeout: 60_000 });
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

/** kubectl with the given kubeconfig; throws with stderr on failure. */
export function kubectlWith(kubeconfig: string, args: string[], input?: string): string {
  return execFileSync("kubectl", args, { env: { ...process.env, KUBECONFIG: kubeconfig }, encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
}

/** `kubectl get connpol -n <namespace>` as a user reads it: the first row's columns by header ("" when there is no row). */
export function connpolRow(kubeconfig: string, namespace: string): Record<string, string> {
  const [header, row] = kubectlWith(kubeconfig, ["get", "connpol", "-n", namespace]).trim().split("\n");
  const names = header!.trim().split(/\s+/);
  const values = (row ?? "").trim().split(/\s+/);
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? ""]));
}

/** Every PromQL expression of the dashboard: panels' targets and the variables' queries. */
export function dashboardExprs(): { title: string; expr: string }[] {
  const d = JSON.parse(readFileSync(join(CHART_DIR, "dashboards/connmeter.json"), "utf8")) as { panels: { title: string; type: string; targets?: { expr: string }[] }[]; templating: { list: { name: string; definition?: string }[] } };
  return [
    ...d.panels.filter((p) => p.type !== "row").flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr }))),
    ...d.templating.list.filter((v) => v.definition).map((v) => ({ title: `variable ${v.name}`, expr: v.definition! })),
  ];
}
