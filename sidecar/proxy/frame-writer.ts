import { randomFillSync } from "node:crypto";

/**
 * Encodes the few frames the sidecar writes itself: a close frame on drain and a text
 * message (a refused join's reply). Frames towards the server are masked, as RFC 6455
 * requires of a client; frames towards the client are not.
 */
export function encodeCloseFrame(code: number, reason: string, masked: boolean): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return encodeFrame(OPCODE_CLOSE, payload.subarray(0, 125), masked);
}

/** One unfragmented, uncompressed text frame. */
export function encodeTextFrame(text: string, masked: boolean): Buffer {
  return encodeFrame(OPCODE_TEXT, Buffer.from(text), masked);
}

function encodeFrame(opcode: number, payload: Buffer, masked: boolean): Buffer {
  const n = payload.length;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (masked ? 4 : 0);
  const frame = Buffer.alloc(headerLength + n);
  frame[0] = 0x80 | opcode;
  frame[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? n : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) frame.writeUInt16BE(n, 2);
  else if (lengthBytes === 8) frame.writeBigUInt64BE(BigInt(n), 2);
  if (!masked) {
    payload.copy(frame, headerLength);
    return frame;
  }
  const maskAt = 2 + lengthBytes;
  randomFillSync(frame, maskAt, 4);
  for (let i = 0; i < n; i++) frame[headerLength + i] = payload[i]! ^ frame[maskAt + (i & 3)]!;
  return frame;
}

const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
