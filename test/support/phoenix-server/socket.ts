// One Phoenix socket (a websocket connection or a long-poll session) and its channels, with
// the routing rules of Phoenix.Socket 1.7.21 as the traces show them:
//   - heartbeats are answered by the socket itself and never make a channel;
//   - a join is run at once (the socket waits for it), everything else for a joined channel is
//     handed to the channel and handled on a later turn of the event loop, as a message to a
//     channel process would be. That is why a leave and a join of the same topic arriving in one
//     read give the trace's order: the join shuts the old channel down before it saw the leave;
//   - a leave with a stale join_ref is dropped; other stale pushes reach the current channel.
import { channelFor } from "./channels.js";
import type { ChannelApi, ChannelBehaviour } from "./channels.js";
import type { ChannelEntry, ChannelOwner, ChannelRegistry, TransportName } from "./registry.js";
import type { OutFrame, PhxMessage, Serializer } from "./serializer.js";

const UNMATCHED = { reason: "unmatched topic" };
const EMPTY = {};

function runChannel(channel: ChannelProcess, msg: PhxMessage): void {
  channel.handle(msg);
}

/** A joined channel; it lives until leave, stop, crash, a duplicate join or its socket's end. */
class ChannelProcess implements ChannelEntry, ChannelApi {
  alive = true;
  private ref: unknown = null;

  constructor(
    readonly owner: PhoenixSocket,
    readonly topic: string,
    readonly joinRef: unknown,
    private readonly behaviour: ChannelBehaviour,
  ) {}

  deliver(msg: PhxMessage): void {
    setImmediate(runChannel, this, msg);
  }

  handle(msg: PhxMessage): void {
    if (!this.alive) return;
    this.ref = msg.ref;
    if (msg.event === "phx_leave") {
      this.reply("ok", EMPTY);
      this.exit("phx_close");
      return;
    }
    try {
      this.behaviour.handleIn(msg.event, msg.payload, this);
    } catch {
      this.crash();
    }
  }

  reply(status: "ok" | "error", response: unknown): void {
    if (!this.alive) return;
    this.emit(() => this.owner.serializer.reply(this.joinRef, this.ref, this.topic, status, response));
  }

  push(event: string, payload: unknown): void {
    if (!this.alive) return;
    this.emit(() => this.owner.serializer.message(this.joinRef, null, this.topic, event, payload));
  }

  broadcast(event: string, payload: unknown): void {
    if (this.alive) this.owner.registry.broadcast(this.topic, event, payload);
  }

  stop(): void {
    this.exit("phx_close");
  }

  crash(): void {
    this.exit("phx_error");
  }

  /** Ends the channel without a word to the client (socket gone, or replaced by a new join). */
  kill(): void {
    if (!this.alive) return;
    this.alive = false;
    this.owner.forget(this);
  }

  private emit(encode: () => OutFrame): void {
    let frame: OutFrame;
    try {
      frame = encode();
    } catch {
      // Elixir would raise while encoding, inside the channel process.
      this.crash();
      return;
    }
    this.owner.send(frame);
  }

  private exit(event: "phx_close" | "phx_error"): void {
    if (!this.alive) return;
    this.kill();
    this.owner.send(this.owner.serializer.message(this.joinRef, this.joinRef, this.topic, event, EMPTY));
  }
}

/** The protocol state of one client connection, independent of its transport. */
export class PhoenixSocket implements ChannelOwner {
  private readonly channels = new Map<string, ChannelProcess>();
  private closed = false;

  constructor(
    readonly registry: ChannelRegistry,
    readonly serializer: Serializer,
    readonly transport: TransportName,
    private readonly write: (frame: OutFrame) => void,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Joined channels on this socket. */
  get channelCount(): number {
    return this.channels.size;
  }

  send(frame: OutFrame): void {
    if (!this.closed) this.write(frame);
  }

  /** Handles one client frame. Throws ProtocolError if it cannot be decoded. */
  handleIn(data: Buffer | string, binary: boolean): void {
    if (this.closed) return;
    const msg = this.serializer.decode(data, binary);
    if (msg.topic === "phoenix" && msg.event === "heartbeat") {
      this.send(this.serializer.reply(null, msg.ref, "phoenix", "ok", EMPTY));
      return;
    }
    const current = typeof msg.topic === "string" ? this.channels.get(msg.topic) : undefined;
    if (msg.event === "phx_join") {
      this.join(current, msg);
    } else if (current === undefined) {
      // A leave of a topic that is not joined is acknowledged; anything else is unmatched.
      const leave = msg.event === "phx_leave";
      this.send(this.serializer.reply(leave ? msg.joinRef : null, msg.ref, msg.topic, leave ? "ok" : "error", leave ? EMPTY : UNMATCHED));
    } else if (msg.event === "phx_leave" && current.joinRef !== null && current.joinRef !== msg.joinRef) {
      // The client raced a server close: no reply, the current channel stays.
    } else {
      current.deliver(msg);
    }
  }

  /** Ends every channel of this socket at once, without telling the client. Idempotent. */
  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of this.channels.values()) {
      channel.alive = false;
      this.registry.unregister(channel);
    }
    this.channels.clear();
  }

  /** Called by a channel that ends. */
  forget(channel: ChannelProcess): void {
    if (this.channels.get(channel.topic) === channel) this.channels.delete(channel.topic);
    this.registry.unregister(channel);
  }

  private join(current: ChannelProcess | undefined, msg: PhxMessage): void {
    // A second join of a joined topic shuts the old channel down first; its phx_close
    // follows the new join's reply.
    let oldClose: OutFrame | undefined;
    if (current !== undefined) {
      current.kill();
      oldClose = this.serializer.message(current.joinRef, current.joinRef, current.topic, "phx_close", EMPTY);
    }
    this.startChannel(msg);
    if (oldClose !== undefined) this.send(oldClose);
  }

  private startChannel(msg: PhxMessage): void {
    const behaviour = channelFor(msg.topic);
    if (behaviour === undefined || typeof msg.topic !== "string") {
      this.send(this.serializer.reply(null, msg.ref, msg.topic, "error", UNMATCHED));
      return;
    }
    const result = behaviour.join(msg.topic, msg.payload);
    if (!result.ok) {
      this.send(this.serializer.reply(msg.joinRef, msg.ref, msg.topic, "error", result.response));
      return;
    }
    const channel = new ChannelProcess(this, msg.topic, msg.joinRef, behaviour);
    this.channels.set(msg.topic, channel);
    this.registry.register(channel);
    this.send(this.serializer.reply(msg.joinRef, msg.ref, msg.topic, "ok", result.response));
  }
}
