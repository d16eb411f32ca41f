// Typed access to ws's Sender and Receiver, which ws's ESM entry exports by name but @types/ws does
// not declare. Tests use them as the reference framer and parser.
import * as ws from "ws";

/** Options of ws's static `Sender.frame`. */
export interface WsFrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  /** true: ws leaves `data` alone and masks into a new buffer. */
  readOnly: boolean;
  rsv1: boolean;
  generateMask?: (mask: Buffer) => void;
}

/** The socket surface ws's Sender writes to. */
export interface WsSenderSocket {
  cork(): void;
  uncork(): void;
  write(data: Buffer, cb?: (err?: Error) => void): boolean;
}

/** The instance surface of ws's Sender used here. */
export interface WsSender {
  send(data: Buffer | string, options: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean }): void;
  ping(data: Buffer | string, mask: boolean): void;
  pong(data: Buffer | string, mask: boolean): void;
  close(code: number | undefined, data: string | undefined, mask: boolean): void;
}

interface WsSenderClass {
  new (socket: WsSenderSocket, extensions?: object, generateMask?: (mask: Buffer) => void): WsSender;
  frame(data: Buffer, options: WsFrameOptions): Buffer[];
}

/** The instance surface of ws's Receiver used by the benchmark and tests. */
export interface WsReceiver {
  write(chunk: Buffer, cb?: (err?: Error | null) => void): boolean;
  on(event: "message", listener: (data: Buffer | Buffer[], isBinary: boolean) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: string, listener: (...args: unknown[]) => void): this;
}

interface WsReceiverClass {
  new (options: { isServer: boolean; extensions?: object; maxPayload?: number; skipUTF8Validation?: boolean }): WsReceiver;
}

const internals = ws as unknown as { Sender: WsSenderClass; Receiver: WsReceiverClass };
export const Sender = internals.Sender;
export const Receiver = internals.Receiver;

/** A ws Sender whose socket records every byte it writes; ws writes synchronously when uncompressed. */
export function recordingSender(generateMask?: (mask: Buffer) => void): { sender: WsSender; bytes(): Buffer } {
  const written: Buffer[] = [];
  const socket: WsSenderSocket = {
    cork() {},
    uncork() {},
    write(data, cb) {
      written.push(Buffer.from(data));
      cb?.();
      return true;
    },
  };
  return { sender: new Sender(socket, {}, generateMask), bytes: () => Buffer.concat(written) };
}

/** One frame as ws frames it, as a single buffer; `data` is not modified. */
export function wsFrame(data: Buffer, options: Omit<WsFrameOptions, "readOnly"> & { maskKey?: Buffer }): Buffer {
  const { maskKey, ...rest } = options;
  const generateMask = maskKey === undefined ? undefined : (mask: Buffer) => void maskKey.copy(mask);
  return Buffer.concat(Sender.frame(data, { ...rest, readOnly: true, ...(generateMask ? { generateMask } : {}) }));
}
