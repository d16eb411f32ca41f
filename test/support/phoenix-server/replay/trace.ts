// Loading the recorded Phoenix transcripts (phoenix-traces/README.md) and turning their
// server-to-client side into comparable items.
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface TraceItem {
  t: number;
  conn: number;
  dir: "c2s" | "s2c";
  kind: "ws_frame" | "http_request" | "http_response";
  opcode?: number;
  opname?: string;
  rsv1?: boolean;
  text?: string;
  base64?: string;
  inflated_base64?: string;
  compressed?: boolean;
  close_code?: number | null;
  close_reason?: string;
  start_line?: string;
  headers?: string[];
  body?: string;
}

export interface RawChunk {
  t: number;
  conn: number;
  dir: "c2s" | "s2c";
  len: number;
  base64: string;
}

export interface TraceConnection {
  conn: number;
  kind: "websocket" | "http";
  lifecycle: Array<{ t: number; what: string }>;
}

export interface TraceMeta {
  scenario: string;
  description: string;
  connections: TraceConnection[];
  server_counts: ServerCount[];
  client_events: Array<{ t: number; what: string; data?: unknown }>;
}

export interface Trace {
  name: string;
  meta: TraceMeta;
  items: TraceItem[];
  raw: RawChunk[];
}

/** A server-to-client item as a test compares it. */
export type WireItem =
  | { conn: number; kind: "http"; startLine: string; headers: string[] }
  | { conn: number; kind: "text"; compressed: boolean; text: string }
  | { conn: number; kind: "binary"; compressed: boolean; base64: string }
  | { conn: number; kind: "close"; code: number | null; reason: string }
  | { conn: number; kind: "control"; opcode: number; base64: string };

import { tracesDir, type ServerCount } from "../../traces.js";

export { tracesDir, type ServerCount };

function readJsonLines<T>(path: string): T[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as T);
}

export function loadTrace(name: string, dir: string = tracesDir()): Trace {
  return {
    name,
    meta: JSON.parse(readFileSync(join(dir, `${name}.meta.json`), "utf8")) as TraceMeta,
    items: readJsonLines<TraceItem>(join(dir, `${name}.jsonl`)),
    raw: readJsonLines<RawChunk>(join(dir, `${name}.raw.jsonl`)),
  };
}

/** Blanks the value of a `date` header, the one part of a head that cannot repeat. */
export function normalizeHeaders(headers: readonly string[]): string[] {
  return headers.map((h) => (/^date:/i.test(h) ? "date: <date>" : h));
}

/** The recorded server-to-client items of a websocket scenario, as WireItems. */
export function expectedServerItems(trace: Trace): WireItem[] {
  const out: WireItem[] = [];
  for (const item of trace.items) {
    if (item.dir !== "s2c") continue;
    if (item.kind === "http_response") {
      out.push({ conn: item.conn, kind: "http", startLine: item.start_line ?? "", headers: normalizeHeaders(item.headers ?? []) });
    } else if (item.kind === "ws_frame") {
      out.push(frameItem(item));
    }
  }
  return out;
}

function frameItem(item: TraceItem): WireItem {
  const compressed = item.rsv1 === true;
  switch (item.opcode) {
    case 1:
      return { conn: item.conn, kind: "text", compressed, text: item.text ?? "" };
    case 2:
      return { conn: item.conn, kind: "binary", compressed, base64: (compressed ? item.inflated_base64 : item.base64) ?? "" };
    case 8:
      return { conn: item.conn, kind: "close", code: item.close_code ?? null, reason: item.close_reason ?? "" };
    default:
      return { conn: item.conn, kind: "control", opcode: item.opcode ?? -1, base64: item.base64 ?? "" };
  }
}

/** Groups items by connection, keeping their order. */
export function byConnection<T extends { conn: number }>(items: readonly T[]): Map<number, T[]> {
  const out = new Map<number, T[]>();
  for (const item of items) {
    const list = out.get(item.conn) ?? [];
    list.push(item);
    out.set(item.conn, list);
  }
  return out;
}
