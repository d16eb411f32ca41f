import { afterEach, describe, expect, it } from "vitest";
import { OccupancyHub, JOIN_BURST, JOIN_REFILL_MS, type VirtualClient } from "../../../../sidecar/occupancy/occupancy-hub.js";
import { parseOccupancyPush } from "../../../../sidecar/occupancy/occupancy-push.js";
import { VSN_1, VSN_2, type PhoenixMessage, type PhoenixVsn } from "../../../../sidecar/phoenix/message.js";
import type { OccupancyPush } from "../../../../sidecar/admin/contract.js";

/** A subscriber socket that keeps the frames written to it (as text, the 2- or 4-byte header cut off). */
class Client implements VirtualClient {
  readonly frames: Buffer[] = [];
  constructor(readonly vsn: PhoenixVsn = VSN_2) {}
  sendVirtual(frame: Buffer): void {
    this.frames.push(frame);
  }
  texts(): unknown[] {
    return this.frames.map(text);
  }
}

function text(frame: Buffer): unknown {
  const len = frame[1]! & 0x7f;
  return JSON.parse(frame.subarray(len === 126 ? 4 : 2).toString("utf8"));
}

const msg = (event: string, ref = "1", joinRef: string | null = "1"): PhoenixMessage => ({ joinRef, ref, topic: "connmeter:occupancy", event, status: null });
const joinText = (params: unknown, ref = "1") => JSON.stringify([ref, ref, "connmeter:occupancy", "phx_join", params]);

function push(counts: Record<string, number>, at = new Date().toISOString()): OccupancyPush {
  return { expose: ["room:*", "lobby"], totals: true, intervalSeconds: 1, snapshot: { at, total: { connections: 9, channels: 8 }, counts, nodes: [] } };
}

describe("OccupancyHub", () => {
  let clock = 1_000_000;
  const hubs: OccupancyHub[] = [];
  const hub = () => {
    const h = new OccupancyHub(() => clock);
    hubs.push(h);
    return h;
  };
  afterEach(() => hubs.splice(0).forEach((h) => h.close()));

  it("answers a join with the snapshot for the asked topics, in the client's serializer", () => {
    const h = hub();
    h.configure(push({ "room:*": 5, "room:1": 2 }), 60);
    const v1 = new Client(VSN_1);
    const [reply] = h.onClientMessage(v1, msg("phx_join"), JSON.stringify({ topic: "connmeter:occupancy", event: "phx_join", payload: { topics: ["room:1", "room:2"] }, ref: 3 }));
    expect(text(reply!)).toMatchObject({ event: "phx_reply", ref: 3, payload: { status: "ok", response: { topics: { "room:1": 2, "room:2": 0 }, total: { connections: 9, channels: 8 } } } });
    expect(h.subscriberCount).toBe(1);
  });

  it("encodes one frame per distinct request and writes the same bytes to each subscriber, only when counts change", () => {
    const h = hub();
    h.configure(push({ "room:*": 1 }), 60);
    const clients = Array.from({ length: 50 }, () => new Client());
    for (const c of clients) h.onClientMessage(c, msg("phx_join"), joinText({ topics: ["room:*"] }));
    const other = new Client();
    h.onClientMessage(other, msg("phx_join"), joinText({ topics: ["lobby"] }));
    clock += 2000;
    h.configure(push({ "room:*": 2 }), 60);
    h.flush();
    expect(h.counters.encodes).toBe(1); // lobby's counts did not change
    expect(clients.every((c) => c.frames[0] === clients[0]!.frames[0])).toBe(true);
    expect(text(clients[0]!.frames[0]!)).toMatchObject([null, null, "connmeter:occupancy", "occupancy", { topics: { "room:*": 2 } }]);
    expect(other.frames).toHaveLength(0);
    clock += 2000;
    h.configure(push({ "room:*": 2 }, new Date(clock).toISOString()), 60); // a new `at` only
    h.flush();
    expect(h.counters.encodes).toBe(1);
  });

  it("rate-limits joins per socket and refuses what is not exposed, naming the reason", () => {
    const h = hub();
    h.configure(push({}), 60);
    const c = new Client();
    expect(text(h.onClientMessage(c, msg("phx_join"), joinText({ topics: ["user:1"] }))[0]!)).toMatchObject(["1", "1", "connmeter:occupancy", "phx_reply", { status: "error", response: { reason: "not_exposed", topic: "user:1" } }]);
    for (let i = 1; i < JOIN_BURST; i++) h.onClientMessage(c, msg("phx_join", String(i + 1)), joinText({ topics: ["lobby"] }, String(i + 1)));
    const limited = h.onClientMessage(c, msg("phx_join", "9"), joinText({ topics: ["lobby"] }, "9"));
    expect(text(limited[0]!)).toMatchObject(["9", "9", "connmeter:occupancy", "phx_reply", { status: "error", response: { reason: "rate_limited" } }]);
    clock += JOIN_REFILL_MS;
    const frames = h.onClientMessage(c, msg("phx_join", "10"), joinText({ topics: ["lobby"] }, "10"));
    // The newer join replaces the live one: phx_close for the old join_ref, then the ok.
    expect(frames.map(text)).toMatchObject([["5", "5", "connmeter:occupancy", "phx_close", {}], ["10", "10", "connmeter:occupancy", "phx_reply", { status: "ok" }]]);
    expect(h.subscriberCount).toBe(1);
  });

  it("answers a leave with ok and phx_close, and a stale join_ref's leave with ok alone", () => {
    const h = hub();
    h.configure(push({}), 60);
    const c = new Client();
    h.onClientMessage(c, msg("phx_join", "1", "1"), joinText({}));
    expect(h.onClientMessage(c, msg("phx_leave", "2", "7"), null).map(text)).toEqual([["7", "2", "connmeter:occupancy", "phx_reply", { response: {}, status: "ok" }]]);
    expect(h.subscriberCount).toBe(1);
    expect(h.onClientMessage(c, msg("phx_leave", "3", "1"), null).map(text)).toEqual([
      ["1", "3", "connmeter:occupancy", "phx_reply", { response: {}, status: "ok" }],
      ["1", "1", "connmeter:occupancy", "phx_close", {}],
    ]);
    expect(h.subscriberCount).toBe(0);
  });

  it("closes subscribers whose topics a new policy no longer exposes, and all of them when it is lifted", () => {
    const h = hub();
    h.configure(push({}), 60);
    const c = new Client();
    h.onClientMessage(c, msg("phx_join"), joinText({ topics: ["lobby"] }));
    h.configure({ ...push({}), expose: ["room:*"] }, 60);
    expect(c.texts()).toEqual([["1", "1", "connmeter:occupancy", "phx_close", {}]]);
    expect(h.subscriberCount).toBe(0);
    expect(h.answer({ topics: [], nodes: false })).not.toHaveProperty("reason");
    h.configure(null);
    expect(h.answer({ topics: [], nodes: false })).toMatchObject({ reason: "not_enabled" });
  });

  it("counts this pod's channels per exposed glob and matched topic", () => {
    const h = hub();
    expect(h.localCounts([["room:1", 2]])).toBeUndefined();
    h.configure(push({}), 60);
    expect({ ...h.localCounts([["room:1", 2], ["room:2", 1], ["lobby", 4], ["user:9", 3]]) }).toEqual({ "room:*": 3, lobby: 4, "room:1": 2, "room:2": 1 });
    // New globs: every topic is matched again, not from what the old ones matched.
    h.configure({ ...push({}), expose: ["user:*"] }, 60);
    expect({ ...h.localCounts([["room:1", 2], ["user:9", 3]]) }).toEqual({ "user:*": 3, "user:9": 3 });
  });
});

describe("parseOccupancyPush", () => {
  it("accepts the operator's push and null, and names the field of a bad one", () => {
    expect(parseOccupancyPush(null)).toBeNull();
    expect(parseOccupancyPush(push({ "room:*": 1 }))).toMatchObject({ expose: ["room:*", "lobby"], snapshot: { counts: { "room:*": 1 } } });
    expect(parseOccupancyPush({ expose: "room:*", totals: true, intervalSeconds: 5 })).toMatch(/^occupancy.expose must be/);
    expect(parseOccupancyPush({ expose: [], totals: true, intervalSeconds: 0 })).toMatch(/^occupancy.intervalSeconds must be/);
    expect(parseOccupancyPush({ ...push({}), snapshot: { at: "x", counts: {}, nodes: [] } })).toMatch(/^occupancy.snapshot.at must be/);
    expect(parseOccupancyPush({ ...push({ "room:*": -1 }) })).toMatch(/counts\["room:\*"\] must be a count/);
  });
});

describe("OccupancyHub: messages it cannot read", () => {
  it("refuses a join cut at the capture cap as too long, and a binary one as bad_params, with the scanner's refs", () => {
    const h = new OccupancyHub(() => 0);
    h.configure(push({}), 60);
    const c = new Client();
    const cut = joinText({ topics: Array.from({ length: 400 }, (_, i) => `room:${i}`) }).slice(0, 4096);
    expect(text(h.onClientMessage(c, msg("phx_join", "4", "4"), cut)[0]!)).toMatchObject(["4", "4", "connmeter:occupancy", "phx_reply", { status: "error", response: { reason: "too_many_topics" } }]);
    expect(text(h.onClientMessage(c, msg("phx_join", "5", "5"), null)[0]!)).toMatchObject(["5", "5", "connmeter:occupancy", "phx_reply", { status: "error", response: { reason: "bad_params" } }]);
    h.close();
  });
});
