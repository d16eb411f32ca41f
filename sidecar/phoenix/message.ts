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
/** The virtual topic the sidecar serves itself when spec.occupancy is set (issue 17); never relayed to the app. */
export const OCCUPANCY_TOPIC = "connmeter:occupancy";

/**
 * The canonical text of a ref or join_ref that is a JSON array or object (Phoenix keeps any
 * JSON value and echoes it back). It is never compared for equality: it matches any ref.
 */
export const COMPLEX_REF = "\u0000[complex]";

/**
 * Reads the serializer version from a socket URL's query the way Phoenix does: Plug decodes
 * the query (pairs split on `&`, `+` and percent escapes decoded, the last `vsn` wins) and
 * Phoenix.Socket picks the serializer whose requirement the version matches, by default
 * `~> 1.0.0` or `~> 2.0.0` (so `2.0.7` and `2.0.1-rc.1` are vsn 2, `2.0.0-rc` and `2.1.0` are
 * refused). An absent vsn means 1.0.0. A version Phoenix refuses never gets a 101, so what is
 * returned for it does not matter.
 */
export function vsnFromUrl(url: string | undefined): PhoenixVsn {
  const q = url?.indexOf("?") ?? -1;
  if (q < 0 || url === undefined) return VSN_1;
  let vsn: string | null = null;
  for (const pair of url.slice(q + 1).split("&")) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf("=");
    if (decodeWwwForm(eq < 0 ? pair : pair.slice(0, eq)) !== "vsn") continue;
    vsn = eq < 0 ? "" : decodeWwwForm(pair.slice(eq + 1));
  }
  return vsn !== null && VSN_2_PATTERN.test(vsn) && !/^2\.0\.0-/.test(vsn) ? VSN_2 : VSN_1;
}

/** `2.0.<patch>`, an optional pre-release and build, with SemVer's no-leading-zero numbers. */
const VSN_2_PATTERN = /^2\.0\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;

/** URI.decode_www_form: `+` is a space, `%XX` a byte; a malformed escape decodes to nothing Phoenix accepts. */
function decodeWwwForm(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return "\u0000invalid";
  }
}
