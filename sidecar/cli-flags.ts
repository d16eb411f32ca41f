// Flag parsing shared by the sidecar's and the operator's command lines (the operator may import
// this module and sidecar/admin/contract.ts from sidecar/, nothing else: eslint.config.js).
import { parseArgs } from "node:util";

/** Where a server listens. */
export interface HostPort {
  host: string;
  port: number;
}

export class ConfigError extends Error {}

/** One string flag of a connmeter program: its env var equivalent, default and help line. */
export interface FlagSpec {
  readonly env: string;
  readonly default: string;
  readonly help: string;
}

/** Usage text of a program's flags, each with its env var and default, then `extra` lines. */
export function flagUsage(program: string, flags: Readonly<Record<string, FlagSpec>>, extra: readonly string[]): string {
  const lines = Object.entries(flags).map(([name, f]) => `  --${name.padEnd(27)} ${f.help} [env ${f.env}, default ${f.default || "none"}]`);
  return [`usage: ${program} [flags]`, ...lines, ...extra].join("\n");
}

/**
 * Parses `argv` against string flags (and --help). `get(name)` is the flag's value, else its env
 * var's, else its default; `all(name)` every value of a repeatable flag. A bad argv throws
 * ConfigError with the usage text.
 */
export function readFlags<N extends string>(
  flags: Readonly<Record<N, FlagSpec>>, argv: string[], env: NodeJS.ProcessEnv, usageText: string, repeatable: readonly N[] = [],
): "help" | { get: (name: N) => string; all: (name: N) => string[] } {
  const options = Object.fromEntries(Object.keys(flags).map((name) => [name, { type: "string" as const, multiple: repeatable.includes(name as N) }]));
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean" } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n${usageText}`);
  }
  if (values.help === true) return "help";
  return {
    get: (name) => {
      const v = values[name];
      return typeof v === "string" ? v : env[flags[name].env] ?? flags[name].default;
    },
    all: (name) => {
      const v = values[name];
      return Array.isArray(v) ? v : [];
    },
  };
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseHostPort(flag: string, value: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 0 && port <= 65535)) {
    throw new ConfigError(`--${flag} must be host:port (e.g. 0.0.0.0:4001 or 127.0.0.1:0), got "${value}"`);
  }
  return { host: m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]!), port };
}

