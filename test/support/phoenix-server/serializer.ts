// Phoenix socket serializers: vsn 1.0.0 (JSON objects) and vsn 2.0.0 (JSON arrays plus the
// binary layout), as Phoenix 1.7.21 writes them (see phoenix-traces/README.md, "Message shapes"
// and "Binary frames").
import { encodeJson } from "./elixir-json.js";

/** What a serializer hands to the transport: a string is a text frame, a Buffer a binary one. */
export type OutFrame = string | Buffer;

/** A decoded client message. Fields keep their JSON types: Phoenix does not check them. */
export interface PhxMessage {
  joinRef: unknown;
  ref: unknown;
  topic: unknown;
  event: unknown;
  /** A JSON value, or a Buffer for a binary push (vsn 2 only). */
  payload: unknown;
}

export type ReplyStatus = "ok" | "error";

/** Thrown for a frame the serializer cannot decode, or a message it cannot encode. */
export class ProtocolError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

export interface Serializer {
  readonly vsn: "1.0.0" | "2.0.0";
  decode(data: Buffer | string, binary: boolean): PhxMessage;
  /** `topic` is whatever the client sent: an unmatched-topic reply echoes non-string topics too. */
  reply(joinRef: unknown, ref: unknown, topic: unknown, status: ReplyStatus, response: unknown): OutFrame;
  /** A server message: a push, phx_close or phx_error. */
  message(joinRef: unknown, ref: unknown, topic: string, event: string, payload: unknown): OutFrame;
  broadcast(topic: string, event: string, payload: unknown): OutFrame;
}

const KIND_PUSH = 0;
const KIND_REPLY = 1;
const KIND_BROADCAST = 2;
const MAX_FIELD_BYTES = 255;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ProtocolError("ERR_PHX_BAD_JSON", "frame is not valid JSON");
  }
}

/** Elixir's `to_string/1` of a ref, as the binary encoder uses it: nil becomes "". */
function refString(ref: unknown): string {
  if (ref === null || ref === undefined) return "";
  return typeof ref === "string" ? ref : encodeJson(ref);
}

function field(value: string, name: string): Buffer {
  const buf = Buffer.from(value, "utf8");
  if (buf.length > MAX_FIELD_BYTES) {
    throw new ProtocolError("ERR_PHX_FIELD_TOO_LONG", `${name} is ${buf.length} bytes, over ${MAX_FIELD_BYTES}`);
  }
  return buf;
}

function binaryFrame(kind: number, fields: readonly Buffer[], data: Buffer): Buffer {
  let size = 1 + fields.length + data.length;
  for (const f of fields) size += f.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = kind;
  let pos = 1;
  for (const f of fields) out[pos++] = f.length;
  for (const f of fields) pos += f.copy(out, pos);
  data.copy(out, pos);
  return out;
}

function decodeV2Binary(buf: Buffer): PhxMessage {
  if (buf.length < 5 || buf[0] !== KIND_PUSH) {
    throw new ProtocolError("ERR_PHX_BAD_BINARY", "binary frame is not a kind 0 push");
  }
  const sizes = [buf[1] ?? 0, buf[2] ?? 0, buf[3] ?? 0, buf[4] ?? 0];
  let pos = 5;
  const parts: string[] = [];
  for (const size of sizes) {
    if (pos + size > buf.length) throw new ProtocolError("ERR_PHX_BAD_BINARY", "binary frame is truncated");
    parts.push(buf.toString("utf8", pos, pos + size));
    pos += size;
  }
  return { joinRef: parts[0], ref: parts[1], topic: parts[2], event: parts[3], payload: buf.subarray(pos) };
}

/** vsn 2.0.0: `[join_ref, ref, topic, event, payload]` text frames and the binary layout. */
export const V2_SERIALIZER: Serializer = {
  vsn: "2.0.0",
  decode(data, binary) {
    if (binary) return decodeV2Binary(typeof data === "string" ? Buffer.from(data) : data);
    const value = parseJson(typeof data === "string" ? data : data.toString("utf8"));
    if (!Array.isArray(value) || value.length < 5) {
      throw new ProtocolError("ERR_PHX_BAD_MESSAGE", "vsn 2 message is not an array of 5");
    }
    const [joinRef, ref, topic, event, payload] = value as unknown[];
    return { joinRef, ref, topic, event, payload };
  },
  reply(joinRef, ref, topic, status, response) {
    if (Buffer.isBuffer(response)) {
      const fields = [
        field(refString(joinRef), "join_ref"),
        field(refString(ref), "ref"),
        field(refString(topic), "topic"),
        field(status, "status"),
      ];
      return binaryFrame(KIND_REPLY, fields, response);
    }
    return `[${encodeJson(joinRef)},${encodeJson(ref)},${encodeJson(topic)},"phx_reply",{"response":${encodeJson(response)},"status":"${status}"}]`;
  },
  message(joinRef, ref, topic, event, payload) {
    if (Buffer.isBuffer(payload)) {
      // The server push has no ref, so its layout differs from the client's kind 0.
      const fields = [field(refString(joinRef), "join_ref"), field(topic, "topic"), field(event, "event")];
      return binaryFrame(KIND_PUSH, fields, payload);
    }
    return `[${encodeJson(joinRef)},${encodeJson(ref)},${encodeJson(topic)},${encodeJson(event)},${encodeJson(payload)}]`;
  },
  broadcast(topic, event, payload) {
    if (Buffer.isBuffer(payload)) {
      return binaryFrame(KIND_BROADCAST, [field(topic, "topic"), field(event, "event")], payload);
    }
    return `[null,null,${encodeJson(topic)},${encodeJson(event)},${encodeJson(payload)}]`;
  },
};

function v1Object(topic: unknown, event: string, payload: string, ref: unknown): string {
  // Keys in Jason's order; join_ref is never written in vsn 1.
  return `{"event":${encodeJson(event)},"payload":${payload},"ref":${encodeJson(ref)},"topic":${encodeJson(topic)}}`;
}

function v1Payload(payload: unknown): string {
  if (Buffer.isBuffer(payload)) {
    throw new ProtocolError("ERR_PHX_BINARY_V1", "vsn 1 cannot carry a binary payload");
  }
  return encodeJson(payload);
}

/** vsn 1.0.0: `{topic, event, payload, ref, join_ref?}` objects; a binary frame is read as JSON text. */
export const V1_SERIALIZER: Serializer = {
  vsn: "1.0.0",
  decode(data) {
    const value = parseJson(typeof data === "string" ? data : data.toString("utf8"));
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new ProtocolError("ERR_PHX_BAD_MESSAGE", "vsn 1 message is not an object");
    }
    const obj = value as Record<string, unknown>;
    for (const key of ["topic", "event", "payload", "ref"]) {
      if (!(key in obj)) throw new ProtocolError("ERR_PHX_BAD_MESSAGE", `vsn 1 message lacks "${key}"`);
    }
    return { joinRef: obj.join_ref ?? null, ref: obj.ref, topic: obj.topic, event: obj.event, payload: obj.payload };
  },
  reply(_joinRef, ref, topic, status, response) {
    return v1Object(topic, "phx_reply", `{"response":${v1Payload(response)},"status":"${status}"}`, ref);
  },
  message(_joinRef, ref, topic, event, payload) {
    return v1Object(topic, event, v1Payload(payload), ref);
  },
  broadcast(topic, event, payload) {
    return v1Object(topic, event, v1Payload(payload), null);
  },
};

const VSN_PATTERN = /^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** The `vsn` query parameter as Plug.Conn.Query decodes it: `+` and `%XX` decoded, the last one wins. */
export function vsnParam(url: URL): string | null {
  return url.searchParams.getAll("vsn").at(-1) ?? null;
}

/**
 * Picks the serializer for a `vsn` query value like Phoenix's defaults (`~> 1.0.0`, `~> 2.0.0`);
 * a missing vsn means 1.0.0. Returns undefined when Phoenix would refuse the connection.
 */
export function negotiateSerializer(vsn: string | null | undefined): Serializer | undefined {
  const m = VSN_PATTERN.exec(vsn ?? "1.0.0");
  if (!m || m[2] !== "0") return undefined;
  // A pre-release of x.0.0 sorts below x.0.0, so `~> x.0.0` does not match it.
  if (m[4] !== undefined && m[3] === "0") return undefined;
  if (m[1] === "1") return V1_SERIALIZER;
  if (m[1] === "2") return V2_SERIALIZER;
  return undefined;
}
