// The small part of XMLHttpRequest the official phoenix client's LongPoll transport uses
// (open, setRequestHeader, send, abort, timeout, readyState, status, responseText and the
// onreadystatechange / onerror / ontimeout callbacks), over node:http. Deliberate differences
// from a browser: abort() fires no events, and a network error fires only onerror.
import { request } from "node:http";
import type { ClientRequest } from "node:http";

export class NodeXMLHttpRequest {
  static readonly UNSENT = 0;
  static readonly OPENED = 1;
  static readonly DONE = 4;

  readyState = NodeXMLHttpRequest.UNSENT;
  status = 0;
  responseText = "";
  timeout = 0;
  onreadystatechange: (() => void) | null = null;
  onerror: (() => void) | null = null;
  ontimeout: (() => void) | null = null;

  private method = "GET";
  private url = "";
  private readonly headers: Record<string, string> = {};
  private req: ClientRequest | undefined;
  private timer: NodeJS.Timeout | undefined;
  private aborted = false;

  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
    this.readyState = NodeXMLHttpRequest.OPENED;
  }

  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }

  send(body?: string | null): void {
    const req = request(new URL(this.url), { method: this.method, headers: this.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        if (this.aborted) return;
        clearTimeout(this.timer);
        this.status = res.statusCode ?? 0;
        this.responseText = Buffer.concat(chunks).toString("utf8");
        this.readyState = NodeXMLHttpRequest.DONE;
        this.onreadystatechange?.();
      });
    });
    req.on("error", () => {
      if (this.aborted) return;
      clearTimeout(this.timer);
      this.readyState = NodeXMLHttpRequest.DONE;
      this.onerror?.();
    });
    if (this.timeout > 0) {
      this.timer = setTimeout(() => {
        this.abort();
        this.ontimeout?.();
      }, this.timeout);
    }
    this.req = req;
    req.end(body ?? undefined);
  }

  abort(): void {
    this.aborted = true;
    clearTimeout(this.timer);
    this.req?.destroy();
  }
}
