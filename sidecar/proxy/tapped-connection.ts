import type { Duplex } from "node:stream";
import type { SocketChannels } from "../ledger/channel-ledger.js";
import { PhoenixDecoder, type PhoenixMessageHandler } from "../phoenix/phoenix-decoder.js";
import type { PhoenixMessage, PhoenixVsn } from "../phoenix/message.js";
import { FrameReader, type DeflateParams } from "../ws/frame-reader.js";
import { encodeCloseFrame } from "./frame-writer.js";

/** What a connection reports to the sidecar that owns it. */
export interface ConnectionObserver {
  onUnparsed(fromClient: boolean): void;
  onConnectionClosed(connection: TappedConnection): void;
}

/** How long a drained connection may take to finish its close handshake before it is cut. */
const CLOSE_GRACE_MS = 1000;
const CLOSE_GOING_AWAY = 1001;

/**
 * One proxied WebSocket after the 101: relays bytes unchanged in both directions with
 * backpressure, and feeds every forwarded chunk to a frame reader per direction whose
 * decoded Phoenix messages update this socket's channel ledger.
 *
 * Forwarding comes first, parsing second: a parser bug can cost a count, never a byte.
 */
export class TappedConnection implements PhoenixMessageHandler {
  readonly openedAtMs: number;
  private readonly c2s: FrameReader;
  private readonly s2c: FrameReader;
  private closed = false;
  private goingAway = false;

  constructor(
    private readonly client: Duplex,
    private readonly upstream: Duplex,
    readonly channels: SocketChannels,
    vsn: PhoenixVsn,
    deflate: DeflateParams | null,
    private readonly observer: ConnectionObserver,
    nowMs: number,
  ) {
    this.openedAtMs = nowMs;
    this.c2s = new FrameReader(new PhoenixDecoder(vsn, true, this), { fromClient: true, deflate, maxMessageBytes: Infinity });
    this.s2c = new FrameReader(new PhoenixDecoder(vsn, false, this), { fromClient: false, deflate, maxMessageBytes: Infinity });
  }

  /**
   * Takes over relaying from http-proxy's pipes (which cannot pause per direction on our
   * terms nor let the tap see each chunk after it is forwarded).
   */
  start(): void {
    this.client.unpipe(this.upstream);
    this.upstream.unpipe(this.client);
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
   * the handshake has not finished within a grace period.
   */
  goAway(): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.client.write(encodeCloseFrame(CLOSE_GOING_AWAY, "sidecar draining", false));
    this.upstream.write(encodeCloseFrame(CLOSE_GOING_AWAY, "sidecar draining", true));
    this.client.end();
    this.upstream.end();
    setTimeout(this.destroy, CLOSE_GRACE_MS).unref();
  }

  /** Cuts both sockets now. */
  readonly destroy = (): void => {
    this.client.destroy();
    this.upstream.destroy();
  };

  onPhoenixMessage(msg: PhoenixMessage, fromClient: boolean): void {
    if (fromClient) this.channels.onClientMessage(msg);
    else this.channels.onServerMessage(msg);
  }

  onUnparsed(fromClient: boolean): void {
    this.observer.onUnparsed(fromClient);
  }

  onCloseFrame(): void {
    // The socket's close ends its channels; a close frame alone does not (the peer may
    // never answer it), so nothing happens here.
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.goingAway) return;
    if (!this.upstream.write(chunk)) this.client.pause();
    this.c2s.push(chunk);
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.goingAway) return;
    if (!this.client.write(chunk)) this.upstream.pause();
    this.s2c.push(chunk);
  };

  private readonly resumeUpstream = (): void => {
    this.upstream.resume();
  };

  private readonly resumeClient = (): void => {
    this.client.resume();
  };

  private readonly endUpstream = (): void => {
    this.upstream.end();
  };

  private readonly endClient = (): void => {
    this.client.end();
  };

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
    this.channels.close();
    this.observer.onConnectionClosed(this);
  };
}
