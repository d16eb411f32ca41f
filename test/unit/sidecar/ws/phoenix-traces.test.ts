// Replays the raw relayed chunks of real Phoenix sessions (shared/phoenix-traces, see its README)
// and checks the reader delivers exactly the frames the transcript decoded.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseDeflateExtension } from "../../../../sidecar/ws/frame-reader.js";
import { TRACES_DIR } from "../../../support/traces.js";
import { byteByByte, readAll, splitAt, summarize, type SinkEvent } from "./recording-sink.js";

const TRACES = TRACES_DIR;

interface RawChunk {
  conn: number;
  dir: "c2s" | "s2c";
  base64: string;
}

interface Frame {
  kind: string;
  conn: number;
  dir: "c2s" | "s2c";
  opcode?: number;
  text?: string;
  base64?: string;
  inflated_base64?: string;
  compressed?: boolean;
  close_code?: number | null;
}

interface Meta {
  connections: Array<{ conn: number; kind: string; upgrade_response_head?: string }>;
}

const readJsonl = <T,>(file: string): T[] =>
  readFileSync(path.join(TRACES, file), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as T);

/** The value of a header in a raw HTTP head, matched case-insensitively. */
function headerOf(head: string, name: string): string | undefined {
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** The transcript's decoded frames of one direction, as the sink should see them. */
function expectedEvents(frames: readonly Frame[]): SinkEvent[] {
  return frames.flatMap((f): SinkEvent[] => {
    if (f.opcode === 8) return [{ kind: "close", code: f.close_code ?? undefined }];
    if (f.opcode !== 1 && f.opcode !== 2) return [];
    const binary = f.opcode === 2;
    const data = binary
      ? Buffer.from((f.compressed ? f.inflated_base64 : f.base64) ?? "", "base64")
      : Buffer.from(f.text ?? "", "utf8");
    return [{ kind: "message", binary, data }];
  });
}

/** The relayed chunks of one direction with the HTTP head (request or 101) cut off, segmentation kept. */
function framesAfterHead(chunks: readonly Buffer[]): Buffer[] {
  const all = Buffer.concat(chunks);
  let skip = all.indexOf("\r\n\r\n") + 4;
  if (skip < 4) throw new Error("no HTTP head");
  const rest: Buffer[] = [];
  for (const chunk of chunks) {
    if (skip >= chunk.length) skip -= chunk.length;
    else {
      rest.push(chunk.subarray(skip));
      skip = 0;
    }
  }
  return rest;
}

interface Case {
  name: string;
  fromClient: boolean;
  extensions: string | undefined;
  chunks: Buffer[];
  expected: string[];
}

function loadCases(): Case[] {
  const scenarios = readdirSync(TRACES)
    .filter((f) => f.endsWith(".meta.json") && !f.startsWith("s10-")) // s10: long-poll, no WebSocket
    .map((f) => f.slice(0, -".meta.json".length))
    .sort();
  return scenarios.flatMap((scenario) => {
    const meta = JSON.parse(readFileSync(path.join(TRACES, `${scenario}.meta.json`), "utf8")) as Meta;
    const raw = readJsonl<RawChunk>(`${scenario}.raw.jsonl`);
    const frames = readJsonl<Frame>(`${scenario}.jsonl`).filter((r) => r.kind === "ws_frame");
    return meta.connections
      .filter((c) => c.kind === "websocket")
      .flatMap((c) =>
        (["c2s", "s2c"] as const).map((dir) => ({
          name: `${scenario} conn ${c.conn} ${dir}`,
          fromClient: dir === "c2s",
          extensions: headerOf(c.upgrade_response_head ?? "", "sec-websocket-extensions"),
          chunks: framesAfterHead(raw.filter((r) => r.conn === c.conn && r.dir === dir).map((r) => Buffer.from(r.base64, "base64"))),
          expected: summarize(expectedEvents(frames.filter((f) => f.conn === c.conn && f.dir === dir))),
        })),
      );
  });
}

const CASES = loadCases();

describe("FrameReader on real Phoenix traces", () => {
  it("found the WebSocket traces, compressed ones included", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(CASES.filter((c) => c.expected.length === 0).map((c) => c.name)).toEqual([]);
    expect(CASES.filter((c) => parseDeflateExtension(c.extensions) !== null).map((c) => c.name)).toEqual([
      "s09-compressed-v1 conn 1 c2s",
      "s09-compressed-v1 conn 1 s2c",
      "s09-compressed-v2 conn 1 c2s",
      "s09-compressed-v2 conn 1 s2c",
    ]);
  });

  describe.each(CASES)("$name", (c) => {
    const read = (chunks: readonly Buffer[]): string[] =>
      summarize(readAll(chunks, { fromClient: c.fromClient, deflate: parseDeflateExtension(c.extensions) }));

    it("delivers the transcript's messages from the chunks as relayed, leaving them untouched", () => {
      const copies = c.chunks.map((chunk) => Buffer.from(chunk));
      expect(read(c.chunks)).toEqual(c.expected);
      c.chunks.forEach((chunk, i) => expect(chunk.equals(copies[i]!)).toBe(true));
    });

    it("delivers the same split at every byte offset and one byte per push", () => {
      const stream = Buffer.concat(c.chunks);
      for (let at = 0; at <= stream.length; at++) expect(read(splitAt(stream, [at])), `split at ${at}`).toEqual(c.expected);
      expect(read(byteByByte(stream))).toEqual(c.expected);
    });
  });
});
