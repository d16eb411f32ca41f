import { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import { ChannelLedger, KIND_WEBSOCKET, type SocketChannels } from "../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../sidecar/ledger/topic-groups.js";
import { LongPollTracker } from "../../../sidecar/longpoll/longpoll-tracker.js";
import { vsnFromUrl } from "../../../sidecar/phoenix/message.js";
import { TappedConnection, type ConnectionObserver } from "../../../sidecar/proxy/tapped-connection.js";
import { parseDeflateExtension } from "../../../sidecar/ws/frame-reader.js";
import { closedAt, headerOf, loadTrace, traceNames, type ServerCount, type Trace, type TraceConnection } from "../../support/traces.js";

/**
 * One recorded WebSocket connection fed, byte for byte, through the sidecar's real
 * {@link TappedConnection} (the production glue between the relay, the frame readers, the
 * decoders and the ledger), with in-memory sockets on both sides.
 */
class ReplayedSocket implements ConnectionObserver {
  readonly channels: SocketChannels;
  private readonly sides: Record<"c2s" | "s2c", Duplex>;
  private readonly heads = { c2s: Buffer.alloc(0), s2c: Buffer.alloc(0) };
  private readonly inHead = { c2s: true, s2c: true };
  unparsed = 0;

  constructor(ledger: ChannelLedger, conn: TraceConnection) {
    this.channels = ledger.openSocket(KIND_WEBSOCKET);
    const url = conn.upgrade_request_head?.split(" ")[1];
    const deflate = parseDeflateExtension(headerOf(conn.upgrade_response_head, "sec-websocket-extensions"));
    this.sides = { c2s: memorySocket(), s2c: memorySocket() };
    new TappedConnection(this.sides.c2s, this.sides.s2c, this.channels, vsnFromUrl(url), deflate, this, 0).start();
  }

  push(dir: "c2s" | "s2c", bytes: Buffer): void {
    if (this.inHead[dir]) {
      // The upgrade request and the 101 come first on each direction; frames follow.
      const all = Buffer.concat([this.heads[dir], bytes]);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) {
        this.heads[dir] = all;
        return;
      }
      this.inHead[dir] = false;
      bytes = all.subarray(end + 4);
    }
    if (bytes.length > 0) this.sides[dir].push(bytes);
  }

  close(): void {
    this.sides.c2s.destroy();
  }

  onUnparsed(): void {
    this.unparsed++;
  }

  onUninspected(): void {}

  onConnectionClosed(): void {}
}

/** A socket whose pushed bytes are read by the relay and whose written bytes go nowhere. */
function memorySocket(): Duplex {
  return new Duplex({
    read() {},
    write(_chunk, _enc, cb) {
      cb();
    },
  });
}

type Event = { t: number; order: number; run: () => void };

/**
 * Replays a trace in time order and records what the sidecar would report at each server
 * snapshot. The sockets deliver data and close events on later ticks, so each event is
 * followed by a turn of the event loop before the next.
 */
async function replay(trace: Trace) {
  let now = 0;
  const ledger = new ChannelLedger(new TopicGroups());
  const longpoll = new LongPollTracker(ledger, 20_000, { onUnparsed: () => {} }, () => now);
  const sockets = new Map<number, ReplayedSocket>();
  const events: Event[] = [];
  let order = 0;
  const at = (t: number, run: () => void) => events.push({ t, order: order++, run });

  for (const c of trace.connections.filter((c) => c.kind === "websocket")) {
    at(c.opened_t, () => sockets.set(c.conn, new ReplayedSocket(ledger, c)));
    const end = closedAt(c);
    if (end !== Infinity) at(end, () => sockets.get(c.conn)!.close());
  }
  const wsConns = new Set(trace.connections.filter((c) => c.kind === "websocket").map((c) => c.conn));
  for (const chunk of trace.raw) {
    if (wsConns.has(chunk.conn)) at(chunk.t, () => sockets.get(chunk.conn)!.push(chunk.dir, chunk.bytes));
  }
  const lastUrl = new Map<number, string>();
  for (const item of trace.items.filter((i) => i.kind === "http_request" || i.kind === "http_response")) {
    if (wsConns.has(item.conn)) continue;
    if (item.kind === "http_request") {
      const url = item.start_line!.split(" ")[1]!;
      at(item.t, () => {
        lastUrl.set(item.conn, url);
        longpoll.onRequestStart(url);
        if (item.body !== undefined && item.body !== "") longpoll.onRequestBody(url, Buffer.from(item.body));
      });
    } else {
      at(item.t, () => longpoll.onResponseBody(lastUrl.get(item.conn), Buffer.from(item.body ?? "")));
    }
  }
  const seen: { snapshot: ServerCount; total: number; topics: Record<string, number>; websockets: number }[] = [];
  for (const snapshot of trace.serverCounts) {
    at(snapshot.t, () => {
      longpoll.sweep();
      seen.push({ snapshot, total: ledger.channels, topics: Object.fromEntries(ledger.topics()), websockets: ledger.sockets[KIND_WEBSOCKET]! });
    });
  }
  // Snapshots are taken after what the relay saw at the same instant.
  events.sort((a, b) => a.t - b.t || a.order - b.order);
  for (const e of events) {
    now = e.t;
    e.run();
    await new Promise((r) => setImmediate(r));
  }
  longpoll.close();
  return { seen, unparsed: [...sockets.values()].reduce((n, s) => n + s.unparsed, 0) };
}

describe("trace replay: every recorded Phoenix transcript through the tap", () => {
  const names = traceNames();

  it("finds the transcripts", () => {
    expect(names.length).toBeGreaterThanOrEqual(25);
  });

  for (const name of names) {
    it(`${name}: counts equal the server's registry at every labelled point`, async () => {
      const { seen, unparsed } = await replay(loadTrace(name));
      expect(seen.length).toBeGreaterThan(0);
      for (const s of seen) {
        expect({ label: s.snapshot.label, total: s.total, topics: s.topics, websockets: s.websockets }).toEqual({
          label: s.snapshot.label,
          total: s.snapshot.total,
          topics: s.snapshot.topics,
          websockets: s.snapshot.websocket_connections,
        });
      }
      expect(unparsed).toBe(0);
    });
  }
});
