// Replays the HTTP requests of a recorded long-poll scenario against a server, with the
// session token swapped for the one the server hands out, and pairs each response with its
// request. A GET the recording shows held is left pending while the replay goes on.
import { request } from "node:http";
import type { ClientRequest } from "node:http";
import type { ReplayTarget } from "./ws-replay.js";
import type { ServerCount, Trace, TraceItem } from "./trace.js";
import { sleep } from "../../wait.js";

/** Response headers compared with the recording (the rest are transport details). */
const COMPARED_HEADERS = ["content-type", "cache-control", "access-control-allow-origin", "vary"];

export interface LongPollExchange {
  /** Request line with the session token replaced by `<token>`. */
  request: string;
  status: number;
  headers: Record<string, string>;
  /** Response body with the session token replaced by `<token>`. */
  body: string;
}

export interface LongPollReplayOptions {
  /** Longest wait for a response the trace shows before the next request (ms, default 2000). */
  answerTimeoutMs?: number;
  /** Called at each `server_counts` point once everything recorded before it was answered. */
  checkpoint?(point: ServerCount): Promise<void> | void;
}

export interface LongPollReplayResult {
  /** Recorded exchanges that got a response, in request order. */
  expected: LongPollExchange[];
  /** The server's responses to the same requests (missing ones have status 0). */
  received: LongPollExchange[];
}

interface Exchange {
  index: number;
  req: TraceItem;
  res: TraceItem | undefined;
}

function pairExchanges(trace: Trace): Exchange[] {
  const exchanges: Exchange[] = [];
  const pending = new Map<number, Exchange[]>();
  for (const item of trace.items) {
    if (item.kind === "http_request") {
      const ex: Exchange = { index: exchanges.length, req: item, res: undefined };
      exchanges.push(ex);
      pending.set(item.conn, [...(pending.get(item.conn) ?? []), ex]);
    } else if (item.kind === "http_response") {
      const ex = pending.get(item.conn)?.shift();
      if (ex !== undefined) ex.res = item;
    }
  }
  return exchanges;
}

function headerMap(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    if (COMPARED_HEADERS.includes(name)) out[name] = line.slice(colon + 1).trim();
  }
  return out;
}

function recordedToken(exchanges: readonly Exchange[]): string | undefined {
  for (const ex of exchanges) {
    const body = ex.res?.body;
    if (body === undefined || body === "") continue;
    const parsed = JSON.parse(body) as { status?: number; token?: string };
    if (parsed.status === 410 && parsed.token !== undefined) return parsed.token;
  }
  return undefined;
}

export async function replayLongPollTrace(
  trace: Trace,
  target: ReplayTarget,
  options: LongPollReplayOptions = {},
): Promise<LongPollReplayResult> {
  const answerTimeoutMs = options.answerTimeoutMs ?? 2000;
  const exchanges = pairExchanges(trace);
  const oldToken = recordedToken(exchanges);
  let newToken: string | undefined;
  const hide = (s: string): string => {
    let out = s;
    if (oldToken !== undefined) out = out.split(oldToken).join("<token>");
    if (newToken !== undefined) out = out.split(newToken).join("<token>");
    return out;
  };
  const got = new Map<number, LongPollExchange>();
  const inflight: ClientRequest[] = [];

  const send = (ex: Exchange): void => {
    const [method = "GET", rawPath = "/"] = (ex.req.start_line ?? "").split(" ");
    const path = oldToken !== undefined && newToken !== undefined ? rawPath.split(oldToken).join(newToken) : rawPath;
    const headers: Record<string, string> = {};
    for (const line of ex.req.headers ?? []) {
      const colon = line.indexOf(":");
      if (line.slice(0, colon).toLowerCase() === "content-type") headers["content-type"] = line.slice(colon + 1).trim();
    }
    const req = request({ host: target.host, port: target.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (newToken === undefined && body.includes('"status":410')) {
          newToken = (JSON.parse(body) as { token?: string }).token;
        }
        const resHeaders: string[] = [];
        for (const [k, v] of Object.entries(res.headers)) resHeaders.push(`${k}: ${String(v)}`);
        got.set(ex.index, { request: hide(ex.req.start_line ?? ""), status: res.statusCode ?? 0, headers: headerMap(resHeaders), body: hide(body) });
      });
    });
    req.on("error", () => undefined);
    req.end(ex.req.body ?? "");
    inflight.push(req);
  };

  const answered = (before: number): boolean => exchanges.every((ex) => ex.res === undefined || ex.res.t >= before || got.has(ex.index));
  const waitForAnswers = async (before: number): Promise<void> => {
    const deadline = Date.now() + answerTimeoutMs;
    while (!answered(before) && Date.now() < deadline) await sleep(2);
  };

  type Action = { t: number; ex: Exchange } | { t: number; point: ServerCount };
  const actions: Action[] = [
    ...exchanges.map((ex) => ({ t: ex.req.t, ex })),
    ...trace.meta.server_counts.map((point) => ({ t: point.t, point })),
  ].sort((a, b) => a.t - b.t);

  try {
    for (const action of actions) {
      await waitForAnswers(action.t);
      if ("ex" in action) send(action.ex);
      else await options.checkpoint?.(action.point);
    }
    await waitForAnswers(Number.POSITIVE_INFINITY);
  } finally {
    for (const req of inflight) req.destroy();
  }

  const answeredInTrace = exchanges.filter((ex) => ex.res !== undefined);
  return {
    expected: answeredInTrace.map((ex) => ({
      request: hide(ex.req.start_line ?? ""),
      status: Number((ex.res?.start_line ?? "").split(" ")[1]),
      headers: headerMap(ex.res?.headers ?? []),
      body: hide(ex.res?.body ?? ""),
    })),
    received: answeredInTrace.map(
      (ex) => got.get(ex.index) ?? { request: hide(ex.req.start_line ?? ""), status: 0, headers: {}, body: "" },
    ),
  };
}
