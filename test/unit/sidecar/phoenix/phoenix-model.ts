// A reference for the sidecar's reading of Phoenix traffic, for property tests:
//   - spell(): writes one JSON value in any spelling Jason reads as that value (whitespace
//     anywhere JSON allows it, \u escapes in any string or key, object keys in any order with
//     earlier duplicates that the last one overrides);
//   - ModelSocket: Phoenix.Socket's routing rules (lib/phoenix/socket.ex, 1.7) over messages
//     decoded by the test app's serializers (JSON.parse, then the V1/V2 serializer's checks),
//     answering synchronously with the frames Phoenix would write.
import { V1_SERIALIZER, V2_SERIALIZER, type Serializer } from "../../../support/phoenix-server/serializer.js";

/** A small deterministic PRNG (mulberry32), so one fast-check seed gives one spelling. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WHITESPACE = ["", "", "", " ", "\n", "\t", "\r\n  "];
const pick = <T>(rnd: () => number, items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;

/** A key that appears earlier with another value; Jason (like JSON.parse) keeps the last. */
export const DUPLICATE = Symbol("duplicate");

/** Writes `value` as JSON in a random but equivalent spelling. */
export function spell(value: unknown, rnd: () => number): string {
  const ws = () => pick(rnd, WHITESPACE);
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") return Number.isInteger(value) && rnd() < 0.2 ? `${value}e0` : value === 0 && rnd() < 0.5 ? "-0" : String(value);
  if (typeof value === "string") return spellString(value, rnd);
  if (Array.isArray(value)) return `[${ws()}${value.map((v) => spell(v, rnd)).join(`${ws()},${ws()}`)}${ws()}]`;
  const entries = Object.entries(value as Record<string, unknown>);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
  const members: string[] = [];
  for (const [k, v] of entries) {
    if (rnd() < 0.2) members.push(`${spellString(k, rnd)}${ws()}:${ws()}${spell(pick(rnd, [null, "phx_join", { topic: "x" }, 7]), rnd)}`);
    members.push(`${spellString(k, rnd)}${ws()}:${ws()}${spell(v, rnd)}`);
  }
  return `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`;
}

function spellString(s: string, rnd: () => number): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.charCodeAt(0);
    if (ch === '"' || ch === "\\" || code < 0x20) out += JSON.stringify(ch).slice(1, -1);
    else if (rnd() < 0.25 && code < 0x10000) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else if (ch === "/" && rnd() < 0.5) out += "\\/";
    else out += ch;
  }
  return out + '"';
}

/** One client message as Phoenix decodes it. */
export interface ClientMessage {
  joinRef: unknown;
  ref: unknown;
  topic: unknown;
  event: unknown;
  payload: unknown;
}

/** The wire value of a client message: a vsn 2 array (maybe with extra elements) or a vsn 1 object. */
export function wireValue(m: ClientMessage, vsn: 1 | 2, extra: boolean): unknown {
  if (vsn === 2) return extra ? [m.joinRef, m.ref, m.topic, m.event, m.payload, "extra"] : [m.joinRef, m.ref, m.topic, m.event, m.payload];
  return { topic: m.topic, event: m.event, payload: m.payload, ref: m.ref, ...(m.joinRef === null ? {} : { join_ref: m.joinRef }) };
}

const UNMATCHED = { reason: "unmatched topic" };

/**
 * Phoenix.Socket over one connection, answering at once: heartbeats, joins (room:* ok,
 * denied:* error, anything else unmatched, a duplicate join closes the old channel after the
 * new reply), leaves (a stale join_ref is dropped silently), pushes to a joined channel
 * (answered ok by it) or to no channel (unmatched). A frame Phoenix cannot decode crashes the
 * socket: `crashed` turns true and nothing more is answered.
 */
export class ModelSocket {
  readonly channels = new Map<string, unknown>();
  okJoins = 0;
  crashed = false;
  private readonly serializer: Serializer;

  constructor(vsn: 1 | 2) {
    this.serializer = vsn === 2 ? V2_SERIALIZER : V1_SERIALIZER;
  }

  /** The text frames the server writes for one client text frame. */
  handle(text: string): string[] {
    if (this.crashed) return [];
    let m;
    try {
      m = this.serializer.decode(text, false);
    } catch {
      this.crashed = true;
      return [];
    }
    const s = this.serializer;
    const out: string[] = [];
    const send = (frame: unknown) => void out.push(frame as string);
    if (m.topic === "phoenix" && m.event === "heartbeat") return [s.reply(null, m.ref, "phoenix", "ok", {}) as string];
    const current = typeof m.topic === "string" && this.channels.has(m.topic) ? { joinRef: this.channels.get(m.topic) } : undefined;
    const topic = m.topic as string;
    if (m.event === "phx_join") {
      if (current !== undefined) this.channels.delete(topic);
      if (typeof m.topic === "string" && topic.startsWith("room:")) {
        this.channels.set(topic, m.joinRef);
        this.okJoins++;
        send(s.reply(m.joinRef, m.ref, topic, "ok", {}));
      } else if (typeof m.topic === "string" && topic.startsWith("denied:")) {
        send(s.reply(m.joinRef, m.ref, topic, "error", { reason: "unauthorized" }));
      } else {
        send(s.reply(null, m.ref, m.topic, "error", UNMATCHED));
      }
      if (current !== undefined) send(s.message(current.joinRef, current.joinRef, topic, "phx_close", {}));
      return out;
    }
    if (current === undefined) {
      const leave = m.event === "phx_leave";
      return [s.reply(leave ? m.joinRef : null, m.ref, m.topic, leave ? "ok" : "error", leave ? {} : UNMATCHED) as string];
    }
    if (m.joinRef !== null && !sameTerm(m.joinRef, current.joinRef)) return []; // stale: dropped
    send(s.reply(current.joinRef, m.ref, topic, "ok", {}));
    if (m.event === "phx_leave") {
      this.channels.delete(topic);
      send(s.message(current.joinRef, current.joinRef, topic, "phx_close", {}));
    }
    return out;
  }
}

/** Elixir's === on decoded JSON terms (containers compared by content). */
function sameTerm(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
