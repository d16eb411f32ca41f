// Loads the official `phoenix` JS client (1.7.21) on Node, typed for what tests use.
//
// The client picks its globals once, at module load, from `self` or `window`; Node has neither,
// so a stand-in `self` holding an XMLHttpRequest is installed for the import (long-poll needs
// it) and removed again. Pass `transport: WebSocket` (from ws) for websockets and
// `transport: LongPoll` for long-poll. The import goes through a variable specifier because the
// package ships no type declarations.
import { NodeXMLHttpRequest } from "./xhr.js";

export interface PhoenixPush {
  receive(status: "ok" | "error" | "timeout", callback: (response: unknown) => void): PhoenixPush;
}

export interface PhoenixChannel {
  readonly state: string;
  readonly topic: string;
  join(timeout?: number): PhoenixPush;
  leave(timeout?: number): PhoenixPush;
  push(event: string, payload: unknown, timeout?: number): PhoenixPush;
  on(event: string, callback: (payload: unknown) => void): number;
  onError(callback: (reason?: unknown) => void): void;
  onClose(callback: () => void): void;
  joinRef(): string;
}

export interface PhoenixClientSocket {
  connect(): void;
  disconnect(callback?: () => void, code?: number, reason?: string): void;
  channel(topic: string, params?: Record<string, unknown>): PhoenixChannel;
  onOpen(callback: () => void): string;
  onClose(callback: (event: unknown) => void): string;
  onError(callback: (error: unknown) => void): string;
  isConnected(): boolean;
}

export interface PhoenixClientOptions {
  transport?: unknown;
  heartbeatIntervalMs?: number;
  rejoinAfterMs?: (tries: number) => number;
  reconnectAfterMs?: (tries: number) => number;
  timeout?: number;
  longpollerTimeout?: number;
  binaryType?: string;
  params?: Record<string, unknown>;
  vsn?: string;
}

export interface PhoenixClientModule {
  Socket: new (endPoint: string, options?: PhoenixClientOptions) => PhoenixClientSocket;
  LongPoll: unknown;
}

let loaded: Promise<PhoenixClientModule> | undefined;

async function load(): Promise<PhoenixClientModule> {
  const g = globalThis as { self?: unknown };
  const hadSelf = "self" in g;
  const previous = g.self;
  if (!hadSelf) g.self = { XMLHttpRequest: NodeXMLHttpRequest };
  try {
    const specifier = "phoenix";
    return (await import(specifier)) as PhoenixClientModule;
  } finally {
    if (!hadSelf) delete g.self;
    else g.self = previous;
  }
}

/** The official client module, loaded once per process. */
export function loadPhoenixClient(): Promise<PhoenixClientModule> {
  loaded ??= load();
  return loaded;
}
