// permessage-deflate negotiation (RFC 7692 §7), read from the server's 101 response: that header is
// what both endpoints act on, so it is all the tap needs to inflate either direction.

/** Negotiated permessage-deflate parameters, as the server accepted them. */
export interface DeflateParams {
  /** The server starts every message it sends with an empty LZ77 window. */
  serverNoContextTakeover: boolean;
  /** The client starts every message it sends with an empty LZ77 window. */
  clientNoContextTakeover: boolean;
  /** log2 of the server's LZ77 window size in bytes (8..15). */
  serverMaxWindowBits: number;
  /** log2 of the client's LZ77 window size in bytes (8..15). */
  clientMaxWindowBits: number;
}

const EXTENSION_NAME = "permessage-deflate";
const MIN_WINDOW_BITS = 8;
const MAX_WINDOW_BITS = 15;

/**
 * Parses the `Sec-WebSocket-Extensions` header of a 101 response.
 *
 * The tap is an observer, not a validator: an endpoint would fail the connection on a malformed
 * parameter, but if it did not, the bytes still flow and must still be read. So a window size it
 * cannot use falls back to 15 bits (a larger window inflates anything a smaller one does) and
 * unknown parameters are ignored.
 *
 * @param header the header value(s) as Node's `IncomingMessage.headers` gives them
 * @returns the parameters of the first `permessage-deflate` element, or null when there is none
 */
export function parseDeflateExtension(header: string | string[] | undefined): DeflateParams | null {
  if (header === undefined) return null;
  const joined = Array.isArray(header) ? header.join(",") : header;
  for (const element of splitOutsideQuotes(joined, ",")) {
    const [name, ...params] = splitOutsideQuotes(element, ";");
    if (name?.trim().toLowerCase() !== EXTENSION_NAME) continue;
    return readParams(params);
  }
  return null;
}

function readParams(params: readonly string[]): DeflateParams {
  const result: DeflateParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: MAX_WINDOW_BITS,
    clientMaxWindowBits: MAX_WINDOW_BITS,
  };
  for (const param of params) {
    const eq = param.indexOf("=");
    const key = (eq === -1 ? param : param.slice(0, eq)).trim().toLowerCase();
    const value = eq === -1 ? undefined : unquote(param.slice(eq + 1).trim());
    switch (key) {
      case "server_no_context_takeover":
        result.serverNoContextTakeover = true;
        break;
      case "client_no_context_takeover":
        result.clientNoContextTakeover = true;
        break;
      case "server_max_window_bits":
        result.serverMaxWindowBits = windowBits(value);
        break;
      case "client_max_window_bits":
        result.clientMaxWindowBits = windowBits(value);
        break;
      default:
        break;
    }
  }
  return result;
}

function windowBits(value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value)) return MAX_WINDOW_BITS;
  const bits = Number(value);
  return bits >= MIN_WINDOW_BITS && bits <= MAX_WINDOW_BITS ? bits : MAX_WINDOW_BITS;
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** Splits on `sep`, except inside a quoted-string (RFC 7230 §3.2.6, backslash escapes honoured). */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === "\\") i++;
    else if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === sep) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}
