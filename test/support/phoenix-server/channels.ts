// The channels of the recorded app (phoenix-traces/README.md), plus two load-test extras:
// a `room:*` join payload `{"reply_bytes": N}` pads the join response with an N-byte string,
// and `echo` on any joined channel replies with its payload.
//
// An event a channel does not handle gets no reply (like a `handle_in` catch-all returning
// `{:noreply, socket}`); the real app's behaviour there is not in the traces.

/** What a channel may do while it handles one message; calls after stop() or crash() are ignored. */
export interface ChannelApi {
  readonly topic: string;
  /** Replies to the message being handled; a Buffer response makes a binary reply. */
  reply(status: "ok" | "error", response: unknown): void;
  /** A server push on this channel only (`[J, null, topic, event, payload]`). */
  push(event: string, payload: unknown): void;
  /** To every channel joined to this topic, this one included. */
  broadcast(event: string, payload: unknown): void;
  /** `{:stop, :normal, socket}`: the client gets phx_close. */
  stop(): void;
  /** The channel process raises: the client gets phx_error and the message no reply. */
  crash(reason: string): void;
}

export type JoinResult = { ok: true; response: unknown } | { ok: false; response: unknown };

export interface ChannelBehaviour {
  join(topic: string, payload: unknown): JoinResult;
  handleIn(event: unknown, payload: unknown, api: ChannelApi): void;
}

/** Largest `reply_bytes` a room join honours (16 MiB). */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024;

function handleCommon(event: unknown, payload: unknown, api: ChannelApi): boolean {
  if (event !== "echo") return false;
  api.reply("ok", payload);
  return true;
}

const PATTERNS: ChannelBehaviour = {
  join: () => ({ ok: true, response: {} }),
  handleIn(event, payload, api) {
    switch (event) {
      case "ping":
        return api.reply("ok", { pong: true });
      case "crash":
        return api.crash("crash requested");
      case "stop":
        return api.stop();
      case "stop_reply":
        api.reply("ok", { bye: true });
        return api.stop();
      case "bcast":
        return api.broadcast("bcast", payload);
      case "bcast_reply":
        api.broadcast("bcast", payload);
        return api.reply("ok", {});
      case "bin":
        return api.reply("ok", payload);
      case "binbcast":
        return api.broadcast("binbcast", payload);
      case "binpush":
        return api.push("binpush", payload);
      case "push_me":
        return api.push("pushed", payload);
      default:
        handleCommon(event, payload, api);
    }
  },
};

const DENIED: ChannelBehaviour = {
  join: () => ({ ok: false, response: { reason: "unauthorized" } }),
  handleIn: () => undefined,
};

function replyBytes(payload: unknown): number {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return 0;
  const n = (payload as Record<string, unknown>).reply_bytes;
  if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) return 0;
  return Math.min(n, MAX_REPLY_BYTES);
}

const ROOM: ChannelBehaviour = {
  join(_topic, payload) {
    const n = replyBytes(payload);
    return { ok: true, response: n > 0 ? { data: "x".repeat(n) } : {} };
  },
  handleIn(event, payload, api) {
    switch (event) {
      case "ping":
        return api.reply("ok", { pong: true });
      case "bcast":
        return api.broadcast("bcast", payload);
      default:
        handleCommon(event, payload, api);
    }
  },
};

/** The channel a topic routes to, like the `channel "patterns:*", ...` lines of a UserSocket. */
export function channelFor(topic: unknown): ChannelBehaviour | undefined {
  if (typeof topic !== "string") return undefined;
  if (topic.startsWith("patterns:")) return PATTERNS;
  if (topic.startsWith("denied:")) return DENIED;
  if (topic.startsWith("room:")) return ROOM;
  return undefined;
}
