import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Loader for the Phoenix wire transcripts recorded from a real Phoenix 1.7.21 server and the
 * official JS client. test/fixtures/phoenix-traces is a verbatim copy of the team's
 * ../shared/phoenix-traces (see its README.md), kept in the repo so a clean clone tests alone.
 */
export const TRACES_DIR = tracesDir();

/** $CONNMETER_TRACES_DIR, else the fixtures copy; throws when missing (tests must not pass silently). */
export function tracesDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.CONNMETER_TRACES_DIR,
    path.resolve(here, "../fixtures/phoenix-traces"),
    // compiled into dist/test/support, the file-relative guess is one level off; the working directory is not
    path.resolve(process.cwd(), "test/fixtures/phoenix-traces"),
  ];
  for (const dir of candidates) if (dir !== undefined && dir !== "" && existsSync(path.join(dir, "README.md"))) return dir;
  throw new Error(`phoenix-traces not found in ${candidates.filter(Boolean).join(", ")}: set CONNMETER_TRACES_DIR`);
}

export interface RawChunk {
  t: number;
  conn: number;
  dir: "c2s" | "s2c";
  bytes: Buffer;
}

export interface TraceItem {
  t: number;
  conn: number;
  dir: "c2s" | "s2c";
  kind: string;
  start_line?: string;
  body?: string;
  [key: string]: unknown;
}

export interface TraceConnection {
  conn: number;
  kind: "websocket" | "http";
  opened_t: number;
  lifecycle?: { t: number; what: string }[];
  upgrade_request_head?: string;
  upgrade_response_head?: string;
}

export interface ServerCount {
  t: number;
  label: string;
  total: number;
  topics: Record<string, number>;
  websocket_connections: number;
}

export interface Trace {
  name: string;
  connections: TraceConnection[];
  serverCounts: ServerCount[];
  items: TraceItem[];
  raw: RawChunk[];
}

export function traceNames(): string[] {
  return readdirSync(TRACES_DIR)
    .filter((f) => f.endsWith(".meta.json"))
    .map((f) => f.slice(0, -".meta.json".length))
    .sort();
}

export function loadTrace(name: string): Trace {
  const meta = JSON.parse(readFileSync(path.join(TRACES_DIR, `${name}.meta.json`), "utf8")) as {
    connections: TraceConnection[];
    server_counts: ServerCount[];
  };
  const lines = (file: string) =>
    readFileSync(path.join(TRACES_DIR, file), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const raw = lines(`${name}.raw.jsonl`).map((r) => ({
    t: r.t as number,
    conn: r.conn as number,
    dir: r.dir as "c2s" | "s2c",
    bytes: Buffer.from(r.base64 as string, "base64"),
  }));
  return { name, connections: meta.connections, serverCounts: meta.server_counts, items: lines(`${name}.jsonl`) as TraceItem[], raw };
}

/** The time a connection ended for a proxy: its first side closed or reset. */
export function closedAt(c: TraceConnection): number {
  const ends = (c.lifecycle ?? []).filter((e) => /closed|RST/.test(e.what)).map((e) => e.t);
  return ends.length === 0 ? Infinity : Math.min(...ends);
}

/** The value of an HTTP header in a raw head, case-insensitive. */
export function headerOf(head: string | undefined, name: string): string | undefined {
  const line = head?.split("\r\n").find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(line.indexOf(":") + 1).trim();
}
