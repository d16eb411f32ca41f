// The messages between the benchmark driver (sidecar-bench.ts) and its load-generator
// processes (load-worker.ts), over the IPC channel that `child_process.fork` opens.
//
// A worker's life: `open` → `opened`, then one of `throughput` → `throughput-done`,
// `latency` → `latency-done`, or (idle phase) nothing until `close` → `closed`; then it exits.

/** Which client opens the sockets: a lean vsn 2 client on `ws`, or the official phoenix JS client. */
export type ClientKind = "lean" | "official";

/** Driver → worker: open sockets and join each one to its own topic. */
export interface OpenCommand {
  type: "open";
  client: ClientKind;
  /** `http://127.0.0.1:port` of the path under test (app, sidecar or nginx). */
  baseUrl: string;
  sockets: number;
  /** Topic of socket i is `${topicPrefix}${firstIndex + i}`. */
  topicPrefix: string;
  firstIndex: number;
  /** Upgrades and joins in flight at once, per worker. */
  concurrency: number;
  /** Give up on sockets not joined by then. */
  timeoutMs: number;
}

/** Driver → worker: pipelined echo pushes as fast as replies come back. */
export interface ThroughputCommand {
  type: "throughput";
  /** Size of the JSON payload object of each push, in bytes. */
  payloadBytes: number;
  /** Echo pushes kept in flight per socket. */
  depth: number;
  warmupMs: number;
  durationMs: number;
}

/** Driver → worker: one echo push at a time per socket, at a fixed rate. */
export interface LatencyCommand {
  type: "latency";
  payloadBytes: number;
  /** Pushes per second per socket (one outstanding at most: a late reply skips a tick). */
  ratePerSocket: number;
  warmupMs: number;
  durationMs: number;
}

export interface CloseCommand {
  type: "close";
}

export type WorkerCommand = OpenCommand | ThroughputCommand | LatencyCommand | CloseCommand;

export interface OpenedReport {
  type: "opened";
  /** Sockets open and joined (join reply ok). */
  joined: number;
  failed: number;
  /** First failure, for the driver's error message. */
  firstError?: string;
  elapsedMs: number;
}

export interface ThroughputReport {
  type: "throughput-done";
  /** Echo replies received inside the measured window. */
  replies: number;
  /** Replies that were not `ok` echo replies (must stay 0). */
  badReplies: number;
  /** Sockets that closed or failed during the run. */
  socketErrors: number;
  /** Length of the measured window as this worker timed it. */
  windowMs: number;
}

export interface LatencyReport {
  type: "latency-done";
  /** Round-trip times in microseconds, measured inside the window. */
  samplesUs: number[];
  /** Ticks that found the previous push still unanswered. */
  skipped: number;
  socketErrors: number;
  badReplies: number;
}

export interface ClosedReport {
  type: "closed";
}

export interface FailedReport {
  type: "failed";
  error: string;
}

export type WorkerReport = OpenedReport | ThroughputReport | LatencyReport | ClosedReport | FailedReport;
