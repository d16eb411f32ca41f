import { Socket } from "node:net";
import type { Duplex } from "node:stream";

// Where a relayed socket's bytes are read into.
//
// Node's default read path allocates a 64 KiB buffer for every read, then copies what was read
// into a new buffer of the right size: two allocations outside the V8 heap per read, whose
// accounting triggers a full mark-compact every few dozen milliseconds under load. At 16 KiB
// messages that, not parsing, is most of the sidecar's CPU (make bench: the relay cost 1.1-1.2×
// nginx with it, 0.7-0.8× without it).
//
// Instead every relayed socket reads into one buffer shared by the whole process (reads run one
// at a time, each handed to its callback at once), and the relay copies each read into a slab
// (below) before writing it on. A copy that is written in full at once and parsed at once is
// given back, so the next read reuses the same bytes and nothing is allocated.
//
// Node offers this as `onread` of net.connect(), but not for the sockets a server accepts, nor
// after a socket was created; the switch below sets what that option sets, on a socket that
// already exists, found by its symbols' names. When this Node has no such fields (a future
// version renamed them), or the socket is not a plain TCP net.Socket (TLS, a test's stream), it
// is not switched and 'data' events keep working as before: slower, never wrong.
// test/unit/sidecar/proxy/shared-reads.test.ts fails if it stops engaging on the Node we ship.

/** Bytes read at most per read (Node's own default read size). */
export const READ_BUFFER_BYTES = 64 * 1024;

const sharedBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

interface SocketInternals {
  _handle?: { useUserBuffer?: (buf: Uint8Array) => void } | null;
}

/** The symbols of the fields `onread` sets: the same on every socket. */
interface OnreadFields {
  kBuffer: symbol;
  kBufferCb: symbol;
  kBufferGen: symbol;
}

/** Looked up on the first socket; null: this Node has no such fields, or shared reads are off. */
let onreadFields: OnreadFields | null | undefined;

function lookUpOnreadFields(socket: Socket): OnreadFields | null {
  if (process.env.CONNMETER_SHARED_READS === "off") return null;
  const symbols = Object.getOwnPropertySymbols(socket);
  const named = (name: string) => symbols.find((s) => s.description === name);
  const [kBuffer, kBufferCb, kBufferGen] = [named("kBuffer"), named("kBufferCb"), named("kBufferGen")];
  return kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined ? null : { kBuffer, kBufferCb, kBufferGen };
}

/**
 * Makes `socket` read into the process-wide buffer and hand each read to `onRead` instead of
 * emitting 'data'. `onRead`'s bytes are valid only during the call: whatever is kept must be
 * copied. pause()/resume() and 'end', 'error', 'close' work as before. Bytes the socket had
 * already buffered (unshift()) still come as 'data', before any read. Returns false, changing
 * nothing, when the socket cannot be switched.
 */
export function readIntoSharedBuffer(socket: Duplex, onRead: (bytes: Buffer) => void): boolean {
  if (socket.constructor !== Socket) return false;
  const fields = (onreadFields ??= lookUpOnreadFields(socket as Socket));
  const handle = (socket as SocketInternals)._handle;
  if (fields === null || handle == null || typeof handle.useUserBuffer !== "function") return false;
  const own = socket as unknown as Record<symbol, unknown>;
  own[fields.kBuffer] = sharedBuffer;
  own[fields.kBufferGen] = null; // the same buffer for every read
  own[fields.kBufferCb] = (n: number, buf: Buffer): void => onRead(buf.subarray(0, n));
  handle.useUserBuffer(sharedBuffer);
  return true;
}

/**
 * A copy of a read that is its own allocation, as Node's own reads make: for bytes that may be
 * held for long (a join gate's), so a held byte never keeps a pool or a slab alive.
 */
export function ownCopy(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}

/** Bytes of one slab: a whole read fits. */
const SLAB_BYTES = READ_BUFFER_BYTES;

/**
 * Copies of reads, carved one after another out of a slab. The last copy can be given back
 * when nothing references it any more (written in full, parsed, not held), and the next copy
 * reuses its bytes. A copy that is still referenced (a write the kernel has not taken yet)
 * stays where it is, and the slab moves on past it; a full slab is left to the garbage
 * collector, which frees it once its last kept copy is gone. A kept copy therefore holds at
 * most one slab (64 KiB), and only while its write is pending: copies that must be held longer
 * (a join gate's, a busy reader's) are made outside the slab by the relay.
 */
export class ReadSlab {
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private used = 0;

  copy(bytes: Buffer): Buffer {
    const n = bytes.length;
    if (this.used + n > SLAB_BYTES) {
      this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, n));
      this.used = 0;
    }
    bytes.copy(this.slab, this.used);
    const chunk = this.slab.subarray(this.used, this.used + n);
    this.used += n;
    return chunk;
  }

  /** `chunk`, the last copy, is no longer referenced by anyone: its bytes may be reused. */
  giveBack(chunk: Buffer): void {
    if (chunk.buffer === this.slab.buffer && chunk.byteOffset + chunk.length === this.used) this.used -= chunk.length;
  }
}

/** The process's slab: copies are made and given back synchronously, one read at a time. */
export const readSlab = new ReadSlab();
