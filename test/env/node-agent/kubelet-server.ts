// The part of the kubelet API the API server proxies for `kubectl logs`:
//   GET /healthz
//   GET /containerLogs/{namespace}/{pod}/{container}?follow&previous&tailLines&limitBytes
// HTTPS on the node's address, client certificates from the cluster CA required.
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ContainerRunner } from "./container.js";

export type ContainerLookup = (namespace: string, pod: string, container: string) => ContainerRunner | undefined;

export interface KubeletTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Starts the logs server on `host:port`. */
export function startKubeletServer(host: string, port: number, tls: KubeletTls, lookup: ContainerLookup): Promise<Server> {
  const server = createServer(
    { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key), requestCert: true, rejectUnauthorized: true },
    (req, res) => handle(req, res, lookup),
  );
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

function handle(req: IncomingMessage, res: ServerResponse, lookup: ContainerLookup): void {
  const url = new URL(req.url ?? "/", "https://kubelet");
  if (url.pathname === "/healthz") return void res.end("ok");
  const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
  if (req.method !== "GET" || !m) {
    res.statusCode = 404;
    return void res.end("the connmeter node agent serves /healthz and /containerLogs only\n");
  }
  const [, ns = "", pod = "", name = ""] = m.map(decodeURIComponent);
  const container = lookup(ns, pod, name);
  if (!container) {
    res.statusCode = 404;
    return void res.end(`container ${name} of pod ${ns}/${pod} is not running on this node\n`);
  }
  const previous = url.searchParams.get("previous") === "true";
  // Waiting to restart, the "current" container is the one that last ran (as with a kubelet).
  const current = container.state.kind === "waiting" && container.restartCount > 0 ? container.restartCount - 1 : container.restartCount;
  if (previous && current === 0) {
    res.statusCode = 400;
    return void res.end(`previous terminated container "${name}" in pod "${pod}" not found\n`);
  }
  const file = container.logPath(previous ? current - 1 : current);
  res.setHeader("Content-Type", "text/plain");
  if (!existsSync(file)) return void res.end();
  const text = readFileSync(file, "utf8");
  const tailLines = Number(url.searchParams.get("tailLines") ?? NaN);
  let out = text;
  if (Number.isInteger(tailLines) && tailLines >= 0) out = text.split("\n").slice(-(tailLines + 1)).join("\n");
  const limit = Number(url.searchParams.get("limitBytes") ?? NaN);
  if (Number.isInteger(limit) && limit > 0) out = out.slice(0, limit);
  res.write(out);
  if (url.searchParams.get("follow") !== "true" || previous) return void res.end();
  follow(file, statSync(file).size, container, res);
}

/** Streams what is appended to `file` until the container stops or the client goes. */
function follow(file: string, from: number, container: ContainerRunner, res: ServerResponse): void {
  let offset = from;
  let reading = false;
  const timer = setInterval(() => {
    if (reading) return;
    const size = existsSync(file) ? statSync(file).size : offset;
    if (size > offset) {
      reading = true;
      const stream = createReadStream(file, { start: offset, end: size - 1 });
      stream.on("data", (c) => res.write(c));
      stream.on("close", () => { offset = size; reading = false; });
      return;
    }
    if (!container.running) { clearInterval(timer); res.end(); }
  }, 250);
  res.on("close", () => clearInterval(timer));
}
