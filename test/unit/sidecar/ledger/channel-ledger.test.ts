import { describe, expect, it } from "vitest";
import {
  ChannelLedger,
  END_CLOSE,
  END_DUPLICATE,
  END_ERROR,
  END_LEAVE,
  END_SOCKET_CLOSE,
  JOIN_ERROR,
  JOIN_OK,
  KIND_LONGPOLL,
  KIND_WEBSOCKET,
  MAX_PENDING_JOINS_PER_SOCKET,
  MAX_PENDING_LEAVES_PER_SOCKET,
  RESUME_PENDING_JOINS,
  type SocketChannels,
} from "../../../../sidecar/ledger/channel-ledger.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";
import type { PhoenixMessage } from "../../../../sidecar/phoenix/message.js";

type Ref = string | null;
const m = (joinRef: Ref, ref: Ref, topic: string, event: string, status: string | null = null): PhoenixMessage => ({ joinRef, ref, topic, event, status });
const join = (s: SocketChannels, topic: string, ref: string, joinRef: Ref = ref) => s.onClientMessage(m(joinRef, ref, topic, "phx_join"));
const leave = (s: SocketChannels, topic: string, ref: string, joinRef: Ref) => s.onClientMessage(m(joinRef, ref, topic, "phx_leave"));
const reply = (s: SocketChannels, topic: string, ref: string, status: string, joinRef: Ref = null) => s.onServerMessage(m(joinRef, ref, topic, "phx_reply", status));
const close = (s: SocketChannels, topic: string, joinRef: Ref) => s.onServerMessage(m(joinRef, joinRef, topic, "phx_close"));
const error = (s: SocketChannels, topic: string, joinRef: Ref) => s.onServerMessage(m(joinRef, joinRef, topic, "phx_error"));

function setup(groups = new TopicGroups()) {
  const ledger = new ChannelLedger(groups);
  return { ledger, s: ledger.openSocket(KIND_WEBSOCKET) };
}

const topics = (l: ChannelLedger) => Object.fromEntries(l.topics());

describe("ChannelLedger", () => {
  it("counts a join only once the server replies ok", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    expect(ledger.channels).toBe(0);
    reply(s, "room:1", "1", "ok", "1");
    expect(ledger.channels).toBe(1);
    expect(topics(ledger)).toEqual({ "room:1": 1 });
    expect(ledger.joinsByResult[JOIN_OK]).toBe(1);
  });

  it("never counts a join the server refuses", () => {
    const { ledger, s } = setup();
    join(s, "denied:x", "1");
    reply(s, "denied:x", "1", "error", "1");
    expect(ledger.channels).toBe(0);
    expect(ledger.joinsByResult[JOIN_ERROR]).toBe(1);
  });

  it("ignores a reply whose topic differs from the pending join's", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    reply(s, "room:2", "1", "ok");
    expect(ledger.channels).toBe(0);
    reply(s, "room:1", "1", "ok");
    expect(ledger.channels).toBe(1);
  });

  it("ends a channel on the reply to its leave", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    reply(s, "room:1", "1", "ok", "1");
    leave(s, "room:1", "2", "1");
    expect(ledger.channels).toBe(1); // a leave alone proves nothing
    reply(s, "room:1", "2", "ok", "1");
    close(s, "room:1", "1"); // the phx_close that follows is a no-op
    expect(ledger.channels).toBe(0);
    expect(ledger.leavesByCause[END_LEAVE]).toBe(1);
    expect(ledger.leavesByCause[END_CLOSE]).toBe(0);
  });

  it("keeps a channel whose leave carried a stale join_ref (the server drops it)", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    reply(s, "room:1", "1", "ok", "1");
    join(s, "room:1", "3");
    reply(s, "room:1", "3", "ok", "3");
    close(s, "room:1", "1");
    leave(s, "room:1", "6", "1");
    expect(ledger.channels).toBe(1);
  });

  it("ends a channel on phx_close (stop) and phx_error (crash) for its join_ref", () => {
    const { ledger, s } = setup();
    join(s, "a", "1");
    reply(s, "a", "1", "ok", "1");
    join(s, "b", "2");
    reply(s, "b", "2", "ok", "2");
    close(s, "a", "1");
    error(s, "b", "2");
    expect(ledger.channels).toBe(0);
    expect(ledger.leavesByCause[END_CLOSE]).toBe(1);
    expect(ledger.leavesByCause[END_ERROR]).toBe(1);
  });

  it("ignores phx_close for a join_ref the socket does not hold", () => {
    const { ledger, s } = setup();
    join(s, "a", "1");
    reply(s, "a", "1", "ok", "1");
    close(s, "a", "9");
    close(s, "zzz", "1");
    expect(ledger.channels).toBe(1);
  });

  it("replaces the old channel on a duplicate join and ignores the old join's phx_close", () => {
    const { ledger, s } = setup();
    join(s, "patterns:stream", "1");
    reply(s, "patterns:stream", "1", "ok", "1");
    join(s, "patterns:stream", "3");
    reply(s, "patterns:stream", "3", "ok", "3");
    close(s, "patterns:stream", "1");
    expect(ledger.channels).toBe(1);
    expect(ledger.leavesByCause[END_DUPLICATE]).toBe(1);
    close(s, "patterns:stream", "3");
    expect(ledger.channels).toBe(0);
  });

  it("handles a vsn 1 duplicate join where no join_ref was ever sent", () => {
    const { ledger, s } = setup();
    join(s, "t", "1", null);
    reply(s, "t", "1", "ok");
    join(s, "t", "2", null);
    reply(s, "t", "2", "ok");
    close(s, "t", null); // closes the replaced channel
    expect(ledger.channels).toBe(1);
    close(s, "t", null); // a later stop closes the live one
    expect(ledger.channels).toBe(0);
  });

  it("never makes a channel of a heartbeat", () => {
    const { ledger, s } = setup();
    s.onClientMessage(m(null, "1", "phoenix", "heartbeat"));
    s.onServerMessage(m(null, "1", "phoenix", "phx_reply", "ok"));
    expect(ledger.channels).toBe(0);
    expect(s.awaitsReplies).toBe(false);
  });

  it("treats a phx_join of topic phoenix as a join: only event heartbeat is the socket's own (an app may route phoenix)", () => {
    const { ledger, s } = setup();
    join(s, "phoenix", "1");
    reply(s, "phoenix", "1", "ok", "1");
    expect(ledger.channels).toBe(1);
  });

  it("removes exactly what a socket held when it closes, never going negative", () => {
    const ledger = new ChannelLedger(new TopicGroups());
    const a = ledger.openSocket(KIND_WEBSOCKET);
    const b = ledger.openSocket(KIND_LONGPOLL);
    for (const [s, t] of [[a, "x"], [a, "y"], [b, "x"]] as const) {
      join(s, t, `r${t}`);
      reply(s, t, `r${t}`, "ok");
    }
    expect(topics(ledger)).toEqual({ x: 2, y: 1 });
    a.close();
    a.close();
    expect(topics(ledger)).toEqual({ x: 1 });
    expect(ledger.leavesByCause[END_SOCKET_CLOSE]).toBe(2);
    reply(a, "x", "rx", "ok"); // late traffic on a closed socket changes nothing
    expect(ledger.channels).toBe(1);
    expect(Array.from(ledger.sockets)).toEqual([0, 1]);
    b.close();
    expect(ledger.channels).toBe(0);
    expect(topics(ledger)).toEqual({});
  });

  it("counts 300 joins sent before any reply exactly: no pending join is ever forgotten", () => {
    const { ledger, s } = setup();
    for (let i = 0; i < 300; i++) join(s, `room:${i}`, String(i));
    expect(s.pendingJoinCount).toBe(300);
    for (let i = 0; i < 300; i++) reply(s, `room:${i}`, String(i), "ok", String(i));
    expect(ledger.channels).toBe(300);
    expect(s.awaitsReplies).toBe(false);
  });

  it("asks the relay to pause at MAX_PENDING_JOINS_PER_SOCKET unanswered joins and to resume at RESUME_PENDING_JOINS, still counting every one", () => {
    const { ledger, s } = setup();
    const n = MAX_PENDING_JOINS_PER_SOCKET + 50; // a read past the bound is still tracked
    for (let i = 0; i < n; i++) {
      expect(s.tooManyPendingJoins).toBe(i >= MAX_PENDING_JOINS_PER_SOCKET);
      join(s, `t${i}`, String(i));
    }
    let i = 0;
    for (; s.pendingJoinCount > RESUME_PENDING_JOINS; i++) {
      expect(s.fewPendingJoins).toBe(false);
      reply(s, `t${i}`, String(i), "ok");
    }
    expect(s.fewPendingJoins).toBe(true);
    for (; i < n; i++) reply(s, `t${i}`, String(i), "ok");
    expect(ledger.channels).toBe(n);
  });

  it("keeps two pending joins that share a ref apart: each reply answers one, oldest first", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "7", "1");
    join(s, "room:2", "7", "2");
    join(s, "room:1", "7", "3"); // a duplicate join of room:1 with the same ref
    reply(s, "room:1", "7", "ok", "1");
    reply(s, "room:2", "7", "error", "2");
    reply(s, "room:1", "7", "ok", "3");
    close(s, "room:1", "1");
    expect(topics(ledger)).toEqual({ "room:1": 1 });
    expect(s.awaitsReplies).toBe(false);
  });

  it("counts joins whose ref is null, as Phoenix accepts them", () => {
    const { ledger, s } = setup();
    s.onClientMessage(m(null, null, "room:1", "phx_join"));
    s.onServerMessage(m(null, null, "room:1", "phx_reply", "ok"));
    expect(ledger.channels).toBe(1);
  });

  it("does not take a reply that names another channel's join_ref for a pending join's", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1", "1");
    reply(s, "room:1", "1", "ok", "1");
    join(s, "room:1", "5", "5"); // a rejoin, while a push with the same ref was answered by the old channel
    reply(s, "room:1", "5", "ok", "1");
    expect(s.pendingJoinCount).toBe(1);
    reply(s, "room:1", "5", "error", "5");
    expect(ledger.channels).toBe(1);
  });

  it("bounds unanswered leaves per socket without changing a count: a phx_close still ends the channel", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    reply(s, "room:1", "1", "ok", "1");
    leave(s, "room:1", "L", "1");
    for (let i = 0; i < 10 * MAX_PENDING_LEAVES_PER_SOCKET; i++) leave(s, "room:1", `stale${i}`, "0"); // dropped by the server
    expect(ledger.leavesForgotten).toBe(10 * MAX_PENDING_LEAVES_PER_SOCKET - MAX_PENDING_LEAVES_PER_SOCKET + 1);
    reply(s, "room:1", "L", "ok", "1"); // its leave was forgotten...
    expect(ledger.channels).toBe(1);
    close(s, "room:1", "1"); // ...but the phx_close that follows ends it
    expect(ledger.channels).toBe(0);
  });

  it("lets a burst of 2,000 joins on one socket take exactly a group's budget of 500: pending joins count against it until answered", () => {
    const { ledger, s } = setup(new TopicGroups([{ match: "room:*", maxChannels: 500 }]));
    let admitted = 0;
    for (let i = 0; i < 2000; i++) {
      if (!s.admitsJoin(`room:${i}`)) continue;
      admitted++;
      join(s, `room:${i}`, String(i));
    }
    expect(admitted).toBe(500);
    for (let i = 0; i < 500; i++) reply(s, `room:${i}`, String(i), "ok");
    expect(ledger.groupChannels(0)).toBe(500);
    expect(s.admitsJoin("room:x")).toBe(false);
  });

  it("counts channels per topic group and admits joins up to the group's budget, pending joins included", () => {
    const { ledger, s } = setup(new TopicGroups([{ match: "room:*", maxChannels: 2 }]));
    expect(ledger.admitsJoin("room:1")).toBe(true);
    join(s, "room:1", "1");
    join(s, "room:2", "2");
    expect(ledger.admitsJoin("room:3")).toBe(false);
    expect(ledger.admitsJoin("lobby")).toBe(true);
    reply(s, "room:1", "1", "ok");
    reply(s, "room:2", "2", "error");
    expect(ledger.groupChannels(0)).toBe(1);
    expect(ledger.admitsJoin("room:3")).toBe(true);
  });

  it("rebuilds group counts when the groups change", () => {
    const { ledger, s } = setup();
    join(s, "room:1", "1");
    reply(s, "room:1", "1", "ok");
    ledger.setGroups(new TopicGroups([{ match: "room:*" }]));
    expect(ledger.groupChannels(0)).toBe(1);
  });
});
