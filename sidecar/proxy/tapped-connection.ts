import type { Duplex } from "node:stream";
import { UNDECIDED_CONTEXT_TAKEOVER, UNDECIDED_FIELD_TOO_LONG, UNDECIDED_TOO_LONG_TO_HOLD, type SocketChannels } from "../ledger/channel-ledger.js";
import { PhoenixDecoder, type PhoenixMessageHandler } from "../phoenix/phoenix-decoder.js";
import { EVENT_JOIN, VSN_2, type PhoenixMessage, type PhoenixVsn } from "../phoenix/message.js";
import { FrameReader, type DeflateParams } from "../ws/frame-reader.js";
import type { InflateBudget } from "../ws/inflate-budget.js";
import { encodeCloseFrame, encodeTextFrame } from "./frame-writer.js";
import type { HoldBudget } from "./hold-budget.js";
import { JoinGate } from "./join-gate.js";
import { ownCopy, readIntoSharedBuffer, readSlab } from "./shared-reads.js";

/** The sidecar's server of the virtual topic (issue 17), as a connection sees it. */
export interface VirtualTopicServer {
  /** Client messages on the virtual topic are cut out of the relay and answered by the sidecar. */
  readonly enabled: boolean;
  /** Answers a client message on the virtual topic: the frames to write back. */
  onClientMessage(client: TappedConnection, msg: PhoenixMessage, text: string | null): Buffer[];
  /** The socket closed. */
  dropSocket(client: TappedConnection): void;
}

/**
 * Bytes waiting to be written to a client past which the sidecar's own pushes to it are
 * skipped (the next one carries newer counts anyway): a client that does not read cannot make
 * the sidecar hold its pushes.
 */
export const MAX_VIRTUAL_BACKLOG_BYTES = 256 * 1024;

/** How a connection is tapped; the budgets are shared by every connection of the process. */
export interface TapOptions {
  /** false: bytes are relayed by the same code but never parsed (the benchmark's bare relay). Default true. */
  tap?: boolean;
  /** What all join gates together may hold back (none: each gate is bounded on its own only). */
  holdBudget?: HoldBudget;
  /** What all readers together may inflate per turn of the event loop (none: each its own slice). */
  inflateBudget?: InflateBudget;
  /** Inflated bytes of one message past which it is not read further (default {@link MAX_INFLATED_MESSAGE_BYTES}). */
  maxInflatedMessageBytes?: number;
  /** The sidecar's server of the virtual topic (none: every message goes to the app). */
  virtual?: VirtualTopicServer | null;
}

/** What a connection reports to the sidecar that owns it. */
export interface ConnectionObserver {
  onUnparsed(fromClient: boolean): void;
  /**
   * A compressed message was not read in full because it inflated past the cap; `contextLost`:
   * this direction's later compressed messages cannot be read either (reported once each).
   */
  onUninspected(connection: TappedConnection, fromClient: boolean, contextLost: boolean): void;
  onConnectionClosed(connection: TappedConnection): void;
}

/** How long a connection may take to finish closing (drain, or one peer gone) before it is cut. */
const CLOSE_GRACE_MS = 1000;
const CLOSE_GOING_AWAY = 1001;
/** Sidecar-made frames waiting for a server message boundary, at most. */
const MAX_QUEUED_INJECTIONS = 64;
/**
 * Bytes a direction's reader inflates per turn of the event loop; then the source socket is
 * paused and parsing goes on at setImmediate, so one client's deflate bomb delays the others
 * by one slice (~1-2 ms of CPU), not by the whole message. Ordinary messages, a few KiB
 * inflated per read, never reach it.
 */
export const INFLATE_SLICE_BYTES = 256 * 1024;
/**
 * Inflated bytes of one message past which the tap stops reading it (~0.1 s of CPU for zeros).
 * A Phoenix message that large is not a lifecycle message anyone needs metered, but a bomb of
 * 1 GiB would cost seconds of CPU; past the cap the message (and, with context takeover, the
 * direction's later compressed messages) is reported uninspected instead.
 */
export const MAX_INFLATED_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * One proxied WebSocket after the 101: relays bytes unchanged in both directions with
 * backpressure, and feeds every forwarded chunk to a frame reader per direction whose
 * decoded Phoenix messages update this socket's channel ledger.
 *
 * Server→client bytes are forwarded first and parsed second: a parser bug can cost a
 * count, never a byte. Client→server bytes go through a {@link JoinGate} when joins may be
 * refused (a topic group has a budget): a join over budget is cut out of the stream and
 * answered by the sidecar with a `phx_reply` error `{reason: "capacity"}`. That needs the
 * client's messages to be independently framed: with permessage-deflate context takeover
 * from the client, cutting one message would corrupt the app's inflater, so such
 * connections are metered but their joins are never refused (counted as undecided).
 *
 * Pending joins are never forgotten: while a socket has too many unanswered, its client is
 * not read until the app's replies catch up (the app answers joins one at a time anyway).
 */
export class TappedConnection implements PhoenixMessageHandler {
  readonly openedAtMs: number;
  private readonly c2s: FrameReader;
  private readonly s2c: FrameReader;
  private readonly c2sDecoder: PhoenixDecoder;
  private readonly s2cDecoder: PhoenixDecoder;
  readonly vsn: PhoenixVsn;
  private readonly gate: JoinGate | null;
  private readonly virtual: VirtualTopicServer | null;
  private readonly tapped: boolean;
  private readonly inflateBudget: InflateBudget | null;
  /** Frames the sidecar writes to the client, waiting for the server stream to reach a message boundary. */
  private injections: Buffer[] | null = null;
  /** While injections wait: the offset in the server stream just past the first whole message of the current chunk. */
  private serverBoundary = -1;
  private closed = false;
  private goingAway = false;
  /** The client is not read while too many of its joins wait for the app's reply. */
  private pausedForJoins = false;
  /** Either direction lost its inflate context: its compressed messages go unread (the observer sets it). */
  uninspected = false;
  /** Chunks that arrived while their direction's reader was still busy with an earlier one. */
  private readonly c2sWaiting: Buffer[] = [];
  private readonly s2cWaiting: Buffer[] = [];
  /** A server chunk parsed before it is written (injections wait), and its stream offset. */
  private serverChunk: Buffer | null = null;
  private serverChunkStart = 0;
  /** A peer ended its side while its last chunks were still being parsed: end the other later. */
  private endUpstreamPending = false;
  private endClientPending = false;

  constructor(
    private readonly client: Duplex,
    private readonly upstream: Duplex,
    readonly channels: SocketChannels,
    vsn: PhoenixVsn,
    deflate: DeflateParams | null,
    private readonly observer: ConnectionObserver,
    nowMs: number,
    options: TapOptions = {},
  ) {
    this.openedAtMs = nowMs;
    this.virtual = options.virtual ?? null;
    this.tapped = options.tap ?? true;
    this.inflateBudget = options.inflateBudget ?? null;
    this.c2sDecoder = new PhoenixDecoder(vsn, true, this);
    this.s2cDecoder = new PhoenixDecoder(vsn, false, this);
    const limits = {
      maxMessageBytes: Infinity,
      inflateSliceBytes: INFLATE_SLICE_BYTES,
      maxInflatedMessageBytes: options.maxInflatedMessageBytes ?? MAX_INFLATED_MESSAGE_BYTES,
      ...(options.inflateBudget === undefined ? {} : { inflateBudget: options.inflateBudget }),
    };
    this.c2s = new FrameReader(this.c2sDecoder, { fromClient: true, deflate, ...limits, onUninspected: this.onClientUninspected });
    this.s2c = new FrameReader(this.s2cDecoder, { fromClient: false, deflate, ...limits, onUninspected: this.onServerUninspected });
    const clientContextTakeover = deflate !== null && !deflate.clientNoContextTakeover;
    const source = { pause: () => this.client.pause(), resume: () => this.resumeClient() };
    this.gate = clientContextTakeover || !this.tapped ? null : new JoinGate(this.c2s, this.writeUpstream, options.holdBudget ?? null, source);
    this.vsn = vsn;
  }

  /** Starts relaying (right after the 101 went to the client). */
  start(): void {
    // Reads go to the process-wide buffer (shared-reads.ts); 'data' then brings only bytes
    // buffered before the switch (the handshake's head), and everything if it cannot switch.
    readIntoSharedBuffer(this.client, this.onClientRead);
    readIntoSharedBuffer(this.upstream, this.onUpstreamRead);
    this.client.on("data", this.onClientData);
    this.upstream.on("data", this.onUpstreamData);
    this.client.on("drain", this.resumeUpstream);
    this.upstream.on("drain", this.resumeClient);
    this.client.on("end", this.endUpstream);
    this.upstream.on("end", this.endClient);
    this.client.on("close", this.onSocketClose);
    this.upstream.on("close", this.onSocketClose);
    this.client.on("error", this.onSocketError);
    this.upstream.on("error", this.onSocketError);
    this.client.resume();
    this.upstream.resume();
  }

  /**
   * Drain: tells both peers the proxy is going away (close 1001) and cuts the sockets if
   * the handshake has not finished within a grace period. A close frame is only written
   * where a frame may start; a peer caught mid-message just sees the connection end.
   */
  goAway(): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    if (this.serverAtBoundary() && this.injections === null) {
      this.client.write(encodeCloseFrame(CLOSE_GOING_AWAY, "sidecar draining", false));
    }
    // Bytes the gate holds were never sent, so the app's stream stops at a frame start.
    if ((!this.c2s.busy && this.c2s.atMessageBoundary) || (this.gate !== null && !this.gate.empty)) {
      this.upstream.write(encodeCloseFrame(CLOSE_GOING_AWAY, "sidecar draining", true));
    }
    this.client.end();
    this.upstream.end();
    this.cutAfterGrace();
  }

  /** Cuts both sockets now. */
  readonly destroy = (): void => {
    this.client.destroy();
    this.upstream.destroy();
  };

  onPhoenixMessage(msg: PhoenixMessage, fromClient: boolean): void {
    if (!fromClient) {
      this.noteServerBoundary();
      this.channels.onServerMessage(msg);
      if (this.pausedForJoins && this.channels.fewPendingJoins) this.resumeAfterJoins();
      return;
    }
    const refusal = msg.event === EVENT_JOIN ? this.channels.joinRefusal(msg.topic) : null;
    if (refusal !== null) {
      if (this.gate !== null && this.gate.canDropEndedMessage()) {
        this.gate.dropEndedMessage();
        this.channels.refuseJoin();
        this.injectToClient(encodeTextFrame(refusalReply(msg, this.vsn, refusal), false));
        return;
      }
      // Over budget but it cannot be cut out: it reaches the app (and is counted); say so.
      this.channels.noteUndecided(this.gate === null ? UNDECIDED_CONTEXT_TAKEOVER : UNDECIDED_TOO_LONG_TO_HOLD);
    }
    this.channels.onClientMessage(msg);
    // Pending joins are never forgotten: past the bound the client waits for replies instead.
    if (this.channels.tooManyPendingJoins && !this.pausedForJoins) {
      this.pausedForJoins = true;
      this.channels.notePausedForJoins();
      this.client.pause();
    }
  }

  // --- virtual topic (issue 17) ---
  servesVirtualTopic(): boolean {
    return this.virtual !== null && this.virtual.enabled;
  }

  /**
   * A client message on the virtual topic: cut out of the stream (the app never sees it, so it
   * never counts against the app's channel limit) and answered by the sidecar. Only a message
   * too long to hold, or on a socket whose client compresses with context takeover (opened
   * before occupancy was enabled), cannot be cut: it reaches the app, which answers "unmatched
   * topic" after the sidecar's reply, and the client drops that as a reply to an answered ref.
   */
  onVirtualMessage(msg: PhoenixMessage, text: string | null): void {
    if (this.gate !== null && this.gate.canDropEndedMessage()) this.gate.dropEndedMessage();
    for (const frame of this.virtual!.onClientMessage(this, msg, text)) this.injectToClient(frame);
  }

  /** A push of the virtual topic: uncompressed (RSV1 clear), so the client's inflate context is untouched. */
  sendVirtual(frame: Buffer): void {
    if (this.closed || this.goingAway || this.client.writableLength > MAX_VIRTUAL_BACKLOG_BYTES) return;
    this.injectToClient(frame);
  }

  /** Client bytes are held until each message is decided: joins may be refused, or virtual-topic messages cut. */
  private get holdsClientMessages(): boolean {
    return this.channels.budgeted || this.servesVirtualTopic();
  }
  // --- end virtual topic ---

  onUndecided(): void {
    this.channels.noteUndecided(UNDECIDED_FIELD_TOO_LONG);
  }

  onOtherMessage(fromClient: boolean): void {
    if (!fromClient) this.noteServerBoundary();
  }

  awaitsReplies(): boolean {
    return this.channels.awaitsReplies;
  }

  onUnparsed(fromClient: boolean): void {
    if (!fromClient) this.noteServerBoundary();
    this.observer.onUnparsed(fromClient);
  }

  onStreamError(fromClient: boolean): void {
    // The reader stopped: nothing held back can be decided any more, so it all goes through.
    if (fromClient) this.gate?.release();
  }

  onCloseFrame(): void {
    // The socket's close ends its channels; a close frame alone does not (the peer may
    // never answer it), so nothing happens here.
  }

  /**
   * A read in the process-wide buffer. Where it is forwarded first and parsed at once (no gate
   * holding, no reader busy, the app's socket not backed up) it goes through a slab copy that
   * is given back once written and parsed; otherwise it is copied into a buffer of its own, as
   * Node's reads would have made it.
   */
  private readonly onClientRead = (bytes: Buffer): void => {
    if (this.goingAway) return;
    if (this.clientChunksQueued || !this.clientForwardedFirst || this.upstream.writableLength > 0) {
      this.onClientData(ownCopy(bytes));
      return;
    }
    const chunk = readSlab.copy(bytes);
    this.takeClientChunk(chunk);
    if (!this.c2s.busy && this.upstream.writableLength === 0) readSlab.giveBack(chunk);
  };

  private readonly onUpstreamRead = (bytes: Buffer): void => {
    if (this.goingAway) return;
    if (this.serverChunksQueued || this.injections !== null || this.client.writableLength > 0) {
      this.onUpstreamData(ownCopy(bytes));
      return;
    }
    const chunk = readSlab.copy(bytes);
    this.takeServerChunk(chunk);
    if (!this.s2c.busy && this.serverChunk === null && this.client.writableLength === 0) readSlab.giveBack(chunk);
  };

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.goingAway) return;
    if (this.clientChunksQueued) {
      this.c2sWaiting.push(chunk); // a read that raced the pause: it waits its turn
      this.client.pause();
      return;
    }
    this.takeClientChunk(chunk);
  };

  /** A chunk reaching the relay now waits its turn: its reader is busy, or earlier chunks wait. */
  private get clientChunksQueued(): boolean {
    return this.c2s.busy || this.c2sWaiting.length > 0;
  }

  private get serverChunksQueued(): boolean {
    return this.s2c.busy || this.s2cWaiting.length > 0;
  }

  /** Nothing held and nothing to decide: client bytes are forwarded first and parsed second. */
  private get clientForwardedFirst(): boolean {
    const gate = this.gate;
    return gate === null || (gate.empty && !this.holdsClientMessages);
  }

  private takeClientChunk(chunk: Buffer): void {
    if (this.clientForwardedFirst) {
      this.gate?.passed(chunk.length);
      if (!this.upstream.write(chunk)) this.client.pause();
      if (this.tapped && !this.c2s.push(chunk)) this.waitForReader(true);
      return;
    }
    const gate = this.gate!; // only a gate holds bytes back
    gate.hold(chunk);
    // The gate decides on whole chunks: it is flushed once the reader has parsed all of this one.
    if (this.c2s.push(chunk)) {
      this.flushGate();
    } else {
      gate.report(); // held across turns: the process-wide budget counts it now
      this.waitForReader(true);
    }
  }

  private flushGate(): void {
    const gate = this.gate;
    if (gate === null || gate.empty) return;
    // Without budgets nothing is refused, so nothing needs to wait.
    const ok = this.holdsClientMessages ? gate.flush() : gate.release();
    if (!ok) this.client.pause();
  }

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.goingAway) return;
    if (this.serverChunksQueued) {
      this.s2cWaiting.push(chunk);
      this.upstream.pause();
      return;
    }
    this.takeServerChunk(chunk);
  };

  private takeServerChunk(chunk: Buffer): void {
    if (this.injections === null) {
      if (!this.client.write(chunk)) this.upstream.pause();
      if (this.tapped && !this.s2c.push(chunk)) this.waitForReader(false);
      return;
    }
    // Frames wait to be injected: parse first to find where a server message ends.
    this.serverChunk = chunk;
    this.serverChunkStart = this.s2c.offset;
    this.serverBoundary = -1;
    if (this.s2c.push(chunk)) this.writeParsedServerChunk();
    else this.waitForReader(false);
  }

  /** Writes the server chunk parsed while injections waited, the injections at its first message boundary. */
  private writeParsedServerChunk(): void {
    const chunk = this.serverChunk!;
    this.serverChunk = null;
    let ok: boolean;
    if (this.serverBoundary >= 0) {
      const cut = this.serverBoundary - this.serverChunkStart;
      this.client.write(chunk.subarray(0, cut));
      this.flushInjections();
      ok = this.client.write(chunk.subarray(cut));
    } else {
      ok = this.client.write(chunk);
      if (this.s2c.atMessageBoundary) this.flushInjections();
    }
    if (!ok) this.upstream.pause();
  }

  /**
   * A reader stopped mid-chunk with its inflate slice spent: its source stays paused (no chunk
   * overtakes the one being parsed, and backpressure reaches the sender) and parsing goes on
   * at the next turn of the event loop, after every other socket's pending I/O.
   */
  private waitForReader(fromClient: boolean): void {
    (fromClient ? this.client : this.upstream).pause();
    this.later(fromClient ? this.continueClient : this.continueServer);
  }

  /** Runs a reader's continuation at a later turn: after other sockets' I/O and, with a shared inflate budget, in turn with other readers. */
  private later(continuation: () => void): void {
    if (this.inflateBudget === null) setImmediate(continuation);
    else this.inflateBudget.defer(continuation);
  }

  private readonly continueClient = (): void => {
    if (this.closed) return;
    if (!this.c2s.resume()) {
      this.later(this.continueClient);
      return;
    }
    this.flushGate();
    while (this.c2sWaiting.length > 0 && !this.c2s.busy) this.takeClientChunk(this.c2sWaiting.shift()!);
    if (this.c2s.busy) return;
    if (this.endUpstreamPending) this.endUpstream();
    else this.resumeClient();
  };

  private readonly continueServer = (): void => {
    if (this.closed) return;
    if (!this.s2c.resume()) {
      this.later(this.continueServer);
      return;
    }
    if (this.serverChunk !== null) this.writeParsedServerChunk();
    else if (this.injections !== null && this.s2c.atMessageBoundary) this.flushInjections();
    while (this.s2cWaiting.length > 0 && !this.s2c.busy) this.takeServerChunk(this.s2cWaiting.shift()!);
    if (this.s2c.busy) return;
    if (this.endClientPending) this.endClient();
    else this.resumeUpstream();
  };

  private readonly onClientUninspected = (contextLost: boolean): void => {
    this.observer.onUninspected(this, true, contextLost);
  };

  private readonly onServerUninspected = (contextLost: boolean): void => {
    this.observer.onUninspected(this, false, contextLost);
  };

  private readonly writeUpstream = (chunk: Buffer): boolean => this.upstream.write(chunk);

  /** The client has been sent whole server messages only: a frame may be written to it now. */
  private serverAtBoundary(): boolean {
    // A busy reader has not yet parsed bytes that were already forwarded.
    return !this.s2c.busy && this.s2c.atMessageBoundary;
  }

  /** Writes a sidecar-made frame to the client between two server messages. */
  private injectToClient(frame: Buffer): void {
    if (this.injections === null && this.serverAtBoundary()) {
      this.client.write(frame);
      return;
    }
    const queue = (this.injections ??= []);
    // A server that never pauses between messages cannot make a client grow this queue:
    // past the bound, a refused join simply gets no answer (the client's join times out).
    if (queue.length < MAX_QUEUED_INJECTIONS) queue.push(frame);
  }

  private flushInjections(): void {
    const frames = this.injections ?? [];
    this.injections = null;
    for (const f of frames) this.client.write(f);
  }

  private noteServerBoundary(): void {
    if (this.injections !== null && this.serverBoundary < 0) this.serverBoundary = this.s2c.offset;
  }

  // A source is read again only when every reason to pause it is gone: its destination's
  // backpressure, its reader still busy with a chunk, and (client) too many joins pending.
  private readonly resumeUpstream = (): void => {
    if (!this.serverChunksQueued && !this.client.writableNeedDrain) this.upstream.resume();
  };

  private readonly resumeClient = (): void => {
    if (!this.pausedForJoins && this.gate?.pausedForBudget !== true && !this.clientChunksQueued && !this.upstream.writableNeedDrain) this.client.resume();
  };

  private resumeAfterJoins(): void {
    this.pausedForJoins = false;
    this.resumeClient();
  }

  // A WebSocket has no half-close: once either peer ends its side, the other is ended too
  // and the pair is cut after a grace period, so an app (or client) that keeps its half open
  // cannot hold a connection, and its count, forever.
  // Bytes still being parsed (held by the gate, or a server chunk waiting for injections) are
  // written before the end.
  private readonly endUpstream = (): void => {
    this.endUpstreamPending = this.c2s.busy;
    if (this.endUpstreamPending) return;
    this.upstream.end();
    this.cutAfterGrace();
  };

  private readonly endClient = (): void => {
    this.endClientPending = this.s2c.busy;
    if (this.endClientPending) return;
    this.client.end();
    this.cutAfterGrace();
  };

  private cutAfterGrace(): void {
    if (!this.closed) setTimeout(this.destroy, CLOSE_GRACE_MS).unref();
  }

  private readonly onSocketError = (): void => {
    // A reset on either side ends the pair; 'close' follows and does the accounting.
    this.destroy();
  };

  private readonly onSocketClose = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.destroy();
    this.c2s.destroy();
    this.s2c.destroy();
    this.gate?.dispose();
    this.c2sDecoder.release();
    this.s2cDecoder.release();
    this.channels.close();
    this.virtual?.dropSocket(this);
    this.observer.onConnectionClosed(this);
  };
}

/** The `phx_reply` a refused join gets, in the client's serializer, as the app would write it. */
function refusalReply(join: PhoenixMessage, vsn: PhoenixVsn, reason: "capacity" | "rate_limited"): string {
  const payload = { response: { reason }, status: "error" };
  if (vsn === VSN_2) return JSON.stringify([join.joinRef, join.ref, join.topic, "phx_reply", payload]);
  return JSON.stringify({ event: "phx_reply", payload, ref: join.ref, topic: join.topic });
}
