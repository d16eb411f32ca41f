import type { Duplex } from "node:stream";

/**
 * The HTTP the sidecar writes itself on a raw socket (an upgrade it refuses or cannot
 * forward): a status line and headers as flat name/value pairs, as Node's rawHeaders.
 */
export function rawHead(statusLine: string, rawHeaders: readonly string[]): string {
  let head = `${statusLine}\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Answers with a plain-text body and closes the socket. */
export function endWithText(socket: Duplex, status: string, body: string, extraHeaders: readonly string[] = []): void {
  const headers = [...extraHeaders, "Content-Type", "text/plain", "Content-Length", String(Buffer.byteLength(body)), "Connection", "close"];
  socket.end(rawHead(`HTTP/1.1 ${status}`, headers) + body);
}

/** The 502 body for an app that cannot be reached, with the likely fix. */
export function upstreamUnavailable(err: NodeJS.ErrnoException): string {
  return `connmeter: upstream unavailable (${err.code ?? err.message}); is the app listening?\n`;
}
