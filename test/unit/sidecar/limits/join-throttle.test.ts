import { describe, expect, it } from "vitest";
import { JOIN_LIMIT_POD, JOIN_LIMIT_SOCKET, JoinThrottle, SocketJoinBucket, type JoinLimits } from "../../../../sidecar/limits/join-throttle.js";

const OFF: JoinLimits = { joinRatePerSecond: 0, joinBurst: 20, podJoinRatePerSecond: 0, podJoinBurst: 200 };

function setup(limits: Partial<JoinLimits>) {
  let t = 0;
  const throttle = new JoinThrottle({ ...OFF, ...limits }, () => t);
  return { throttle, advance: (ms: number) => (t += ms) };
}

const admitted = (throttle: JoinThrottle, socket: SocketJoinBucket, n: number) => Array.from({ length: n }, () => throttle.admit(socket)).filter(Boolean).length;

describe("JoinThrottle", () => {
  it("is off at rate 0: every join passes and none is counted", () => {
    const { throttle } = setup({});
    expect(throttle.enabled).toBe(false);
    expect(admitted(throttle, new SocketJoinBucket(), 10_000)).toBe(10_000);
    expect([...throttle.refused]).toEqual([0, 0]);
  });

  it("admits a socket's burst, then one join per 1/rate seconds; another socket has its own bucket", () => {
    const { throttle, advance } = setup({ joinRatePerSecond: 2, joinBurst: 5 });
    const a = new SocketJoinBucket();
    expect(admitted(throttle, a, 8)).toBe(5);
    expect(throttle.refused[JOIN_LIMIT_SOCKET]).toBe(3);
    expect(admitted(throttle, new SocketJoinBucket(), 5)).toBe(5);
    advance(499);
    expect(throttle.admit(a)).toBe(false); // 0.998 of a token
    advance(1);
    expect(throttle.admit(a)).toBe(true);
    advance(60_000); // refills to the burst, never past it
    expect(admitted(throttle, a, 10)).toBe(5);
  });

  it("caps the pod over every socket, and a join the pod refuses spends no socket token", () => {
    const { throttle, advance } = setup({ joinRatePerSecond: 1, joinBurst: 2, podJoinRatePerSecond: 10, podJoinBurst: 3 });
    const sockets = Array.from({ length: 4 }, () => new SocketJoinBucket());
    expect(sockets.map((s) => throttle.admit(s))).toEqual([true, true, true, false]);
    expect(throttle.refused[JOIN_LIMIT_POD]).toBe(1);
    advance(100); // one pod token back
    expect(throttle.admit(sockets[3]!)).toBe(true);
    expect(throttle.admit(sockets[3]!)).toBe(false); // the pod is empty again; socket 3 still holds a token
    advance(100);
    expect(throttle.admit(sockets[3]!)).toBe(true);
  });

  it("keeps its tokens when the same limits are pushed again, and caps them at a lower burst", () => {
    const { throttle } = setup({ podJoinRatePerSecond: 1, podJoinBurst: 10 });
    const s = new SocketJoinBucket();
    expect(admitted(throttle, s, 6)).toBe(6);
    throttle.configure({ ...OFF, podJoinRatePerSecond: 1, podJoinBurst: 10 }); // a refresh push
    expect(admitted(throttle, s, 10)).toBe(4);
    throttle.configure({ ...OFF, podJoinRatePerSecond: 100, podJoinBurst: 2 });
    expect(admitted(throttle, s, 1)).toBe(0);
  });
});
