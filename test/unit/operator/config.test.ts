import { describe, expect, it } from "vitest";
import { ConfigError, loadOperatorConfig, usage, type OperatorConfig } from "../../../operator/config.js";

const load = (argv: string[], env: NodeJS.ProcessEnv = {}): OperatorConfig => {
  const c = loadOperatorConfig(argv, env);
  if (c === "help") throw new Error("unexpected help");
  return c;
};

describe("loadOperatorConfig", () => {
  it("defaults: all namespaces, leader election on, metrics on :8080, health on :8081, 64 scrapes", () => {
    expect(load([])).toEqual({
      kubeconfig: undefined, namespace: undefined, leaderElect: true, leaderElectionNamespace: "default",
      leaderElectionId: "connmeter-operator", metricsAddr: { host: "0.0.0.0", port: 8080 }, healthAddr: { host: "0.0.0.0", port: 8081 },
      maxConcurrentScrapes: 64, concurrentReconciles: 4, adminToken: undefined, cleanup: false,
    });
  });

  it.each([
    { argv: ["--kubeconfig", "/tmp/kc"], field: "kubeconfig", want: "/tmp/kc" },
    { argv: ["--kubeconfig=/tmp/kc"], field: "kubeconfig", want: "/tmp/kc" },
    { argv: ["--namespace", "apps"], field: "namespace", want: "apps" },
    { argv: ["--leader-elect=false"], field: "leaderElect", want: false },
    { argv: ["--cleanup"], field: "cleanup", want: true },
    { argv: ["--leader-elect=0"], field: "leaderElect", want: false },
    { argv: ["--leader-elect"], field: "leaderElect", want: true },
    { argv: ["--leader-elect=TRUE"], field: "leaderElect", want: true },
    { argv: ["--metrics-addr", "127.0.0.1:0"], field: "metricsAddr", want: { host: "127.0.0.1", port: 0 } },
    { argv: ["--health-addr", ":9000"], field: "healthAddr", want: { host: "0.0.0.0", port: 9000 } },
    { argv: ["--max-concurrent-scrapes", "8"], field: "maxConcurrentScrapes", want: 8 },
    { argv: ["--concurrent-reconciles=2"], field: "concurrentReconciles", want: 2 },
    { argv: ["--leader-election-id", "x"], field: "leaderElectionId", want: "x" },
  ] as const)("flag $argv sets $field", ({ argv, field, want }) => {
    expect(load([...argv])[field]).toEqual(want);
  });

  it.each([
    { env: { CONNMETER_KUBECONFIG: "/k" }, field: "kubeconfig", want: "/k" },
    { env: { CONNMETER_NAMESPACE: "apps" }, field: "namespace", want: "apps" },
    { env: { CONNMETER_LEADER_ELECT: "false" }, field: "leaderElect", want: false },
    { env: { CONNMETER_METRICS_ADDR: "127.0.0.1:9100" }, field: "metricsAddr", want: { host: "127.0.0.1", port: 9100 } },
    { env: { CONNMETER_HEALTH_ADDR: "127.0.0.1:9101" }, field: "healthAddr", want: { host: "127.0.0.1", port: 9101 } },
    { env: { CONNMETER_MAX_CONCURRENT_SCRAPES: "3" }, field: "maxConcurrentScrapes", want: 3 },
    { env: { CONNMETER_ADMIN_TOKEN: "s3cret" }, field: "adminToken", want: "s3cret" },
    { env: { POD_NAMESPACE: "connmeter-system" }, field: "leaderElectionNamespace", want: "connmeter-system" },
  ] as const)("env $env sets $field", ({ env, field, want }) => {
    expect(load([], { ...env })[field]).toEqual(want);
  });

  it("a flag wins over its env var", () => {
    expect(load(["--namespace", "flag"], { CONNMETER_NAMESPACE: "env" }).namespace).toBe("flag");
    expect(load(["--leader-elect=true"], { CONNMETER_LEADER_ELECT: "false" }).leaderElect).toBe(true);
  });

  it("an empty admin token is no token", () => {
    expect(load([], { CONNMETER_ADMIN_TOKEN: "" }).adminToken).toBeUndefined();
  });

  it("--help returns help, and the usage lists every flag and env var", () => {
    expect(loadOperatorConfig(["--help"], {})).toBe("help");
    const text = usage();
    for (const flag of ["--kubeconfig", "--namespace", "--leader-elect", "--metrics-addr", "--health-addr", "--max-concurrent-scrapes", "CONNMETER_ADMIN_TOKEN", "CONNMETER_NAMESPACE"]) {
      expect(text).toContain(flag);
    }
  });

  it.each([
    { argv: ["--leader-elect=maybe"], names: "--leader-elect" },
    { argv: ["--max-concurrent-scrapes", "0"], names: "--max-concurrent-scrapes" },
    { argv: ["--max-concurrent-scrapes", "1.5"], names: "--max-concurrent-scrapes" },
    { argv: ["--concurrent-reconciles", "abc"], names: "--concurrent-reconciles" },
    { argv: ["--metrics-addr", "nope"], names: "--metrics-addr" },
    { argv: ["--health-addr", "1.2.3.4:99999"], names: "--health-addr" },
    { argv: ["--no-such-flag"], names: "--no-such-flag" },
    { argv: ["stray"], names: "stray" },
  ])("refuses $argv with a ConfigError naming $names", ({ argv, names }) => {
    let err: unknown;
    try { loadOperatorConfig(argv, {}); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(names);
  });

  it("refuses a bad env value naming the setting", () => {
    expect(() => loadOperatorConfig([], { CONNMETER_MAX_CONCURRENT_SCRAPES: "-3" })).toThrow(/max-concurrent-scrapes/);
  });
});
