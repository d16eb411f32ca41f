// Probes as the kubelet runs them: HTTP GET (2xx/3xx is success) and TCP connect from the node
// to the pod's address, and exec (in the pod's network namespace, with the container's
// environment, since a container is a local process).
// A Prober applies initialDelaySeconds, periodSeconds, timeoutSeconds and the thresholds.
import type { V1Container, V1Probe } from "@kubernetes/client-node";
import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";

export interface ProbeResult {
  readonly ok: boolean;
  readonly message: string;
}

/** Resolves a probe's port: a number, or the name of one of the container's ports. */
export function probePort(port: number | string | undefined, container: V1Container): number | undefined {
  if (typeof port === "number") return port;
  if (port == null) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

/** Runs one probe attempt. */
export async function probeOnce(
  probe: V1Probe, podIP: string, container: V1Container, env: ReadonlyMap<string, string>,
  inPod: (argv: readonly string[]) => string[] = (argv) => [...argv],
): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.httpGet) {
    const port = probePort(probe.httpGet.port as number | string, container);
    if (port == null) return { ok: false, message: `httpGet port ${String(probe.httpGet.port)} is not a container port` };
    return httpProbe(probe.httpGet.scheme === "HTTPS", probe.httpGet.host || podIP, port, probe.httpGet.path || "/",
      Object.fromEntries((probe.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value])), timeoutMs);
  }
  if (probe.tcpSocket) {
    const port = probePort(probe.tcpSocket.port as number | string, container);
    if (port == null) return { ok: false, message: `tcpSocket port ${String(probe.tcpSocket.port)} is not a container port` };
    return tcpProbe(probe.tcpSocket.host || podIP, port, timeoutMs);
  }
  if (probe.exec?.command?.length) return execProbe(probe.exec.command, inPod(probe.exec.command), env, timeoutMs);
  return { ok: false, message: "unsupported probe (the connmeter node agent runs httpGet, tcpSocket and exec probes)" };
}

function httpProbe(tls: boolean, host: string, port: number, path: string, headers: Record<string, string>, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = (tls ? httpsRequest : httpRequest)(
      { host, port, path, method: "GET", headers: { "User-Agent": "kube-probe/1.35", ...headers }, timeout: timeoutMs, rejectUnauthorized: false },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve({ ok: code >= 200 && code < 400, message: `HTTP probe to ${host}:${port}${path}: status ${code}` });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ ok: false, message: `HTTP probe to ${host}:${port}${path} failed: ${err.message}` }));
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = connect({ host, port, timeout: timeoutMs });
    sock.once("connect", () => { sock.destroy(); resolve({ ok: true, message: `TCP ${host}:${port} connected` }); });
    sock.once("timeout", () => { sock.destroy(); resolve({ ok: false, message: `TCP ${host}:${port} timed out` }); });
    sock.once("error", (err) => resolve({ ok: false, message: `TCP ${host}:${port}: ${err.message}` }));
  });
}

function execProbe(command: readonly string[], argv: readonly string[], env: ReadonlyMap<string, string>, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    const child = spawn(file ?? "", args, { env: Object.fromEntries(env), stdio: "ignore", timeout: timeoutMs });
    child.once("error", (err) => resolve({ ok: false, message: `exec ${command[0] ?? ""}: ${err.message}` }));
    child.once("exit", (code, signal) => resolve({ ok: code === 0, message: `exec ${command.join(" ")}: ${signal ?? `exit ${code}`}` }));
  });
}

/**
 * Runs one probe periodically and keeps its verdict with the thresholds applied. `initial` is
 * the verdict before the threshold is first met (false for readiness and startup, true for
 * liveness). `onAttempt` runs after every attempt.
 */
export class Prober {
  private timer: NodeJS.Timeout | undefined;
  private successes = 0;
  private failures = 0;
  private stopped = false;
  verdict: boolean;
  lastMessage = "";

  constructor(
    private readonly probe: V1Probe,
    private readonly attempt: () => Promise<ProbeResult>,
    initial: boolean,
    private readonly onAttempt: (prober: Prober, changed: boolean) => void,
  ) {
    this.verdict = initial;
  }

  /** failureThreshold consecutive failures (a startup probe that failed out restarts the container). */
  get failedOut(): boolean {
    return this.failures >= (this.probe.failureThreshold ?? 3);
  }

  start(): void {
    this.timer = setTimeout(() => void this.tick(), (this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const result = await this.attempt();
    if (this.stopped) return;
    this.lastMessage = result.message;
    if (result.ok) { this.successes++; this.failures = 0; } else { this.failures++; this.successes = 0; }
    const before = this.verdict;
    if (result.ok && this.successes >= (this.probe.successThreshold ?? 1)) this.verdict = true;
    if (!result.ok && this.failures >= (this.probe.failureThreshold ?? 3)) this.verdict = false;
    this.onAttempt(this, this.verdict !== before);
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), (this.probe.periodSeconds ?? 10) * 1000);
  }
}
