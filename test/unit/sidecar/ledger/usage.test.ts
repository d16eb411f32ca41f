import { describe, expect, it } from "vitest";
import { ChannelLedger, KIND_LONGPOLL, KIND_WEBSOCKET, type SocketChannels } from "../../../../sidecar/ledger/channel-ledger.js";
import { TimeIntegral } from "../../../../sidecar/ledger/time-integral.js";
import { TopicGroups } from "../../../../sidecar/ledger/topic-groups.js";

/** A clock the test moves by hand, in ms. */
function fakeClock(startMs = 1_000_000) {
  let t = startMs;
  return { now: () => t, advance: (seconds: number) => (t += seconds * 1000) };
}

function joinOk(s: SocketChannels, topic: string, ref: string): void {
  s.onClientMessage({ joinRef: ref, ref, topic, event: "phx_join", status: null });
  s.onServerMessage({ joinRef: ref, ref, topic, event: "phx_reply", status: "ok" });
}

const seconds = (l: ChannelLedger) => Object.fromEntries(l.channelSeconds());

describe("TimeIntegral", () => {
  it("integrates a count that changes over time, exact at any instant between changes", () => {
    const i = new TimeIntegral(0);
    i.add(2, 1000); // 2 from t=1 s
    expect(i.secondsAt(3500)).toBe(5);
    i.add(-1, 4000); // 6 s so far, then 1
    expect(i.secondsAt(4000)).toBe(6);
    expect(i.secondsAt(10_000)).toBe(12);
  });

  it("adds nothing while the clock steps back, and starts from a carried value", () => {
    const i = new TimeIntegral(5000, 7);
    i.add(1, 5000);
    expect(i.secondsAt(4000)).toBe(7);
    expect(i.secondsAt(6000)).toBe(8);
  });
});

describe("ChannelLedger usage", () => {
  it("counts channel-seconds per topic group, open channels up to the read, the rest under _other", () => {
    const clock = fakeClock();
    const ledger = new ChannelLedger(new TopicGroups([{ match: "room:*" }, { match: "user:*" }]), clock.now);
    const s = ledger.openSocket(KIND_WEBSOCKET);
    joinOk(s, "room:1", "1");
    joinOk(s, "lobby", "2");
    clock.advance(10);
    joinOk(s, "room:2", "3");
    clock.advance(5);
    expect(seconds(ledger)).toEqual({ "room:*": 20, "user:*": 0, _other: 15 });
    s.close();
    clock.advance(100);
    expect(seconds(ledger)).toEqual({ "room:*": 20, "user:*": 0, _other: 15 });
  });

  it("counts long-poll sessions' seconds until they end, apart from websockets", () => {
    const clock = fakeClock();
    const ledger = new ChannelLedger(new TopicGroups(), clock.now);
    const lp = ledger.openSocket(KIND_LONGPOLL);
    joinOk(lp, "room:lp", "1");
    clock.advance(30);
    expect(ledger.socketSeconds(KIND_LONGPOLL)).toBe(30);
    lp.close();
    clock.advance(30);
    expect(ledger.socketSeconds(KIND_LONGPOLL)).toBe(30);
    expect(ledger.socketSeconds(KIND_WEBSOCKET)).toBe(0);
    expect(seconds(ledger)).toEqual({ _other: 30 });
  });

  it("keeps a group's seconds when groups are pushed again, and folds a dropped group's into _other", () => {
    const clock = fakeClock();
    const ledger = new ChannelLedger(new TopicGroups([{ match: "room:*" }, { match: "user:*" }]), clock.now);
    const s = ledger.openSocket(KIND_WEBSOCKET);
    joinOk(s, "room:1", "1");
    joinOk(s, "user:1", "2");
    clock.advance(10);
    ledger.setGroups(new TopicGroups([{ match: "room:*", maxChannels: 5 }]));
    expect(seconds(ledger)).toEqual({ "room:*": 10, _other: 10 });
    clock.advance(10);
    // user:1 now counts under _other; every series only grew
    expect(seconds(ledger)).toEqual({ "room:*": 20, _other: 20 });
    ledger.setGroups(new TopicGroups([{ match: "room:*" }, { match: "user:*" }]));
    clock.advance(1);
    expect(seconds(ledger)).toEqual({ "room:*": 21, "user:*": 1, _other: 20 });
  });
});
