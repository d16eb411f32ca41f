/**
 * The few fields of a Phoenix channel message that metering needs. Payloads are never kept:
 * only a reply's `status` is read out of them.
 */
export interface PhoenixMessage {
  /** join_ref of the channel the message belongs to; null when absent (vsn 1 server output, broadcasts). */
  joinRef: string | null;
  /** The message ref; null for broadcasts and server pushes. */
  ref: string | null;
  topic: string;
  event: string;
  /** `payload.status` of a `phx_reply` ("ok" | "error" | ...); null for other events. */
  status: string | null;
}

/** Phoenix serializer versions, taken from the `vsn` query parameter of the socket URL. */
export const VSN_1 = 1;
export const VSN_2 = 2;
export type PhoenixVsn = typeof VSN_1 | typeof VSN_2;

export const EVENT_JOIN = "phx_join";
export const EVENT_REPLY = "phx_reply";
export const EVENT_LEAVE = "phx_leave";
export const EVENT_CLOSE = "phx_close";
export const EVENT_ERROR = "phx_error";
export const HEARTBEAT_TOPIC = "phoenix";

/**
 * Reads the serializer version from a socket URL's query (`vsn=2.0.0`). Phoenix defaults to
 * 1.0.0 when the parameter is absent, so do we.
 */
export function vsnFromUrl(url: string | undefined): PhoenixVsn {
  const q = url?.indexOf("?") ?? -1;
  if (q < 0 || url === undefined) return VSN_1;
  const vsn = new URLSearchParams(url.slice(q + 1)).get("vsn");
  return vsn !== null && vsn.startsWith("2.") ? VSN_2 : VSN_1;
}
