import { OCCUPANCY_TOPIC } from "../admin/contract.js";
import { VSN_2, type PhoenixMessage, type PhoenixVsn } from "../phoenix/message.js";

/**
 * A client message on the virtual topic, read from its text: refs exactly as the client sent
 * them (a JSON value Phoenix echoes back unchanged) and the payload. When `text` is null (a
 * binary message) or does not parse (cut at the decoder's cap), the scanner's canonical refs
 * are used and the payload is undefined.
 */
export interface VirtualMessage {
  joinRef: unknown;
  ref: unknown;
  event: string;
  /** The payload as sent, or undefined when it could not be read (too long, not JSON). */
  payload: unknown;
}

export function readVirtualMessage(msg: PhoenixMessage, text: string | null, vsn: PhoenixVsn): VirtualMessage {
  const fallback: VirtualMessage = { joinRef: msg.joinRef, ref: msg.ref, event: msg.event, payload: undefined };
  if (text === null) return fallback;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return fallback;
  }
  if (vsn === VSN_2) {
    if (!Array.isArray(doc) || doc.length < 5) return fallback;
    return { joinRef: doc[0], ref: doc[1], event: msg.event, payload: doc[4] };
  }
  if (typeof doc !== "object" || doc === null) return fallback;
  const o = doc as Record<string, unknown>;
  return { joinRef: o.join_ref ?? null, ref: o.ref ?? null, event: msg.event, payload: o.payload };
}

/** A `phx_reply` to `m`, in the client's serializer, as Phoenix writes it. */
export function replyText(vsn: PhoenixVsn, m: VirtualMessage, status: "ok" | "error", response: unknown): string {
  const payload = { response, status };
  if (vsn === VSN_2) return JSON.stringify([m.joinRef ?? null, m.ref ?? null, OCCUPANCY_TOPIC, "phx_reply", payload]);
  return JSON.stringify({ event: "phx_reply", payload, ref: m.ref ?? null, topic: OCCUPANCY_TOPIC });
}

/** The `phx_close` Phoenix sends when a channel ends (after a leave, or replaced by a newer join). */
export function closeText(vsn: PhoenixVsn, joinRef: unknown): string {
  if (vsn === VSN_2) return JSON.stringify([joinRef ?? null, joinRef ?? null, OCCUPANCY_TOPIC, "phx_close", {}]);
  return JSON.stringify({ event: "phx_close", payload: {}, ref: joinRef ?? null, topic: OCCUPANCY_TOPIC });
}

/** A push `[null, null, topic, event, payload]` (vsn 1: `{event, payload, ref: null, topic}`); the same bytes for every subscriber. */
export function pushText(vsn: PhoenixVsn, event: string, payload: unknown): string {
  if (vsn === VSN_2) return JSON.stringify([null, null, OCCUPANCY_TOPIC, event, payload]);
  return JSON.stringify({ event, payload, ref: null, topic: OCCUPANCY_TOPIC });
}
