// Command-line wiring for the demo-app process: where to listen, when to stop.
import { startPhoenixServer } from "./index.js";
import type { PhoenixServer } from "./index.js";

export interface ListenAddress {
  host: string;
  port: number;
}

export const DEFAULT_LISTEN: ListenAddress = { host: "127.0.0.1", port: 4000 };

/** Parses `host:port`, `[v6]:port`, `:port` or `port`. Throws on anything else. */
export function parseListen(value: string, fallbackHost = DEFAULT_LISTEN.host): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid listen address ${JSON.stringify(value)} (want host:port)`);
  }
  const host = m[1] || m[2] || fallbackHost;
  return { host, port };
}

export interface CliConfig {
  listen: ListenAddress;
  longpollWindowMs?: number;
  longpollIdleTimeoutMs?: number;
}

function flagValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === name) return argv[i + 1];
    if (arg?.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}

function optionalMs(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer of milliseconds`);
  return n;
}

/**
 * Reads `--listen host:port` (or env LISTEN), else env PORT on HOST (default 127.0.0.1), else
 * 127.0.0.1:4000; plus `--longpoll-window-ms` / LONGPOLL_WINDOW_MS and
 * `--longpoll-idle-timeout-ms` / LONGPOLL_IDLE_TIMEOUT_MS.
 */
export function readCliConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CliConfig {
  const listenArg = flagValue(argv, "--listen") ?? env.LISTEN;
  let listen: ListenAddress;
  if (listenArg !== undefined && listenArg !== "") listen = parseListen(listenArg);
  else if (env.PORT !== undefined && env.PORT !== "") listen = parseListen(env.PORT, env.HOST || DEFAULT_LISTEN.host);
  else listen = { ...DEFAULT_LISTEN, host: env.HOST || DEFAULT_LISTEN.host };
  return {
    listen,
    longpollWindowMs: optionalMs(flagValue(argv, "--longpoll-window-ms") ?? env.LONGPOLL_WINDOW_MS, "longpoll window"),
    longpollIdleTimeoutMs: optionalMs(flagValue(argv, "--longpoll-idle-timeout-ms") ?? env.LONGPOLL_IDLE_TIMEOUT_MS, "longpoll idle timeout"),
  };
}

/** The process surface the CLI touches, so tests can run it in-process. */
export interface CliProcess {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  once(signal: "SIGTERM" | "SIGINT", listener: () => void): unknown;
  log(line: string): void;
  exit(code: number): void;
}

/** Starts the server, logs one line, and on SIGTERM/SIGINT closes it and exits 0. */
export async function runCli(proc: CliProcess): Promise<PhoenixServer> {
  const config = readCliConfig(proc.argv, proc.env);
  const server = await startPhoenixServer({
    host: config.listen.host,
    port: config.listen.port,
    longpollWindowMs: config.longpollWindowMs,
    longpollIdleTimeoutMs: config.longpollIdleTimeoutMs,
  });
  const stop = (): void => {
    void server.close().then(() => proc.exit(0));
  };
  proc.once("SIGTERM", stop);
  proc.once("SIGINT", stop);
  proc.log(`phoenix-server listening on ${server.url} (socket /socket, /socketz; GET /count, /healthz)`);
  return server;
}
