// Replays the decoded client frames of a one-connection websocket scenario with a `ws` client
// (one message per frame, the vsn and path from the recorded upgrade) and collects the decoded
// server messages. Independent of the raw replay's own frame decoder: ws does the decoding.
import { WebSocket } from "ws";
import type { ReplayTarget } from "./ws-replay.js";
import type { ServerCount, Trace, TraceItem } from "./trace.js";
import { sleep } from "../../wait.js";

/** A server message as compared: parsed JSON text, base64 binary, or the close. */
export type DecodedMessage = { json: unknown } | { binary: string } | { close: number; reason: string };

export interface WsClientReplayOptions {
  answerTimeoutMs?: number;
  settleMs?: number;
  checkpoint?(point: ServerCount): Promise<void> | void;
}

function decoded(item: TraceItem): DecodedMessage {
  if (item.opcode === 8) return { close: item.close_code ?? 1005, reason: item.close_reason ?? "" };
  if (item.opcode === 2) return { binary: (item.rsv1 === true ? item.inflated_base64 : item.base64) ?? "" };
  return { json: JSON.parse(item.text ?? "null") as unknown };
}

export async function replayWithWsClient(
  trace: Trace,
  target: ReplayTarget,
  options: WsClientReplayOptions = {},
): Promise<{ expected: DecodedMessage[]; received: DecodedMessage[] }> {
  const answerTimeoutMs = options.answerTimeoutMs ?? 2000;
  const settleMs = options.settleMs ?? 25;
  const upgrade = trace.items.find((i) => i.kind === "http_request" && i.dir === "c2s");
  const path = (upgrade?.start_line ?? "").split(" ")[1] ?? "/";
  if (trace.meta.connections.length !== 1) throw new Error(`${trace.name} has more than one connection`);

  const serverFrames = trace.items.filter((i) => i.dir === "s2c" && i.kind === "ws_frame");
  const received: DecodedMessage[] = [];
  let socket: WebSocket | undefined;
  const open = (): Promise<WebSocket> => {
    const client = new WebSocket(`ws://${target.host}:${target.port}${path}`, {
      perMessageDeflate: path.startsWith("/socketz") ? { threshold: 0 } : true,
    });
    client.on("message", (data: Buffer, isBinary) =>
      received.push(isBinary ? { binary: data.toString("base64") } : { json: JSON.parse(data.toString()) as unknown }),
    );
    client.on("close", (code, reason) => {
      if (code !== 1006) received.push({ close: code, reason: reason.toString() });
    });
    client.on("error", () => undefined);
    return new Promise((resolve, reject) => {
      client.once("open", () => resolve(client));
      client.once("error", reject);
    });
  };

  const abrupt = trace.meta.connections[0]?.lifecycle.find((e) => e.what === "relay -> server: RST");
  type Action = { t: number; open: true } | { t: number; frame: TraceItem } | { t: number; point: ServerCount } | { t: number; abort: true };
  const actions: Action[] = [
    { t: upgrade?.t ?? 0, open: true as const },
    ...trace.items.filter((i) => i.dir === "c2s" && i.kind === "ws_frame").map((frame) => ({ t: frame.t, frame })),
    ...trace.meta.server_counts.map((point) => ({ t: point.t, point })),
    ...(abrupt !== undefined ? [{ t: abrupt.t, abort: true as const }] : []),
  ].sort((a, b) => a.t - b.t);

  let lastT = 0;
  for (const action of actions) {
    const want = serverFrames.filter((f) => f.t < action.t).length;
    const deadline = Date.now() + answerTimeoutMs;
    while (received.length < want && Date.now() < deadline) await sleep(2);
    if (serverFrames.filter((f) => f.t > lastT && f.t < action.t).length === 0 && action.t - lastT > 2) await sleep(settleMs);
    lastT = action.t;
    if ("open" in action) {
      socket = await open();
    } else if ("point" in action) {
      await options.checkpoint?.(action.point);
    } else if (socket === undefined) {
      throw new Error(`${trace.name}: a client action before the upgrade`);
    } else if ("abort" in action) {
      socket.terminate();
    } else if (action.frame.opcode === 8) {
      socket.close(action.frame.close_code ?? undefined, action.frame.close_reason ?? "");
    } else if (action.frame.opcode === 2) {
      const frame = action.frame;
      socket.send(Buffer.from((frame.rsv1 === true ? frame.inflated_base64 : frame.base64) ?? "", "base64"));
    } else {
      socket.send(action.frame.text ?? "");
    }
  }
  const deadline = Date.now() + answerTimeoutMs;
  while (received.length < serverFrames.length && Date.now() < deadline) await sleep(2);
  await sleep(settleMs * 2);
  socket?.terminate();
  return { expected: serverFrames.map(decoded), received };
}
