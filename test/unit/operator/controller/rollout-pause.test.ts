// The rollout guard's pause decision (table) and its read-decide-write against a fake API.
import { describe, expect, it } from "vitest";
import type { RolloutGuardSpec } from "../../../../operator/api/types.js";
import type { DeploymentPauseRead } from "../../../../operator/controller/cluster.js";
import { decidePause, pauseDeployment, type PauseRecord } from "../../../../operator/controller/rollout-pause.js";
import { churnRatios } from "../../../../operator/controller/rollout.js";

const GUARD: RolloutGuardSpec = { maxChurnRatio: 2, minConnectionMinutes: 60, minJoins: 100, action: "pause" };
const DONE: PauseRecord = { revision: "v2", how: "paused", atMs: 0, seenPaused: true };

describe("decidePause", () => {
  it.each([
    ["action none reports only", { ...GUARD, action: "none" as const }, "Deployment", true, undefined, "off"],
    ["within the ratio: nothing", GUARD, "Deployment", false, undefined, "off"],
    ["a StatefulSet cannot be paused", GUARD, "StatefulSet", true, undefined, "cannotPause"],
    ["a new revision that churns is paused", GUARD, "Deployment", true, undefined, "pause"],
    ["the revision paused already is never paused again (a user's resume stands)", GUARD, "Deployment", true, DONE, "done"],
    ["a later revision that churns is paused too", GUARD, "Deployment", true, { ...DONE, revision: "v1" }, "pause"],
  ] as const)("%s", (_name, guard, kind, exceeded, done, want) => {
    expect(decidePause(guard, kind, exceeded, "v2", done)).toBe(want);
  });
});

function api(reads: DeploymentPauseRead[], patchStatuses: (number | undefined)[]) {
  const calls: string[] = [];
  return {
    calls,
    writer: {
      getDeployment: async () => {
        const r = reads.shift();
        calls.push(`get ${r?.resourceVersion}`);
        return r;
      },
      pauseDeployment: async (_ns: string, _name: string, rv: string) => {
        calls.push(`pause ${rv}`);
        const status = patchStatuses.shift();
        if (status !== undefined) throw Object.assign(new Error(`${status}: refused`), { statusCode: status });
      },
    },
  };
}

const read = (resourceVersion: string, generation = 1, paused = false): DeploymentPauseRead => ({ resourceVersion, generation, paused });

describe("pauseDeployment", () => {
  it("writes with the resourceVersion read, and on 409 reads and writes again", async () => {
    const a = api([read("1"), read("2")], [409, undefined]);
    expect(await pauseDeployment(a.writer, "ns", "chat")).toEqual({ kind: "paused" });
    expect(a.calls).toEqual(["get 1", "pause 1", "get 2", "pause 2"]);
  });

  it("never writes over a spec change made between the reads, nor over a pause already there", async () => {
    const changed = api([read("1", 1), read("2", 2)], [409]);
    expect(await pauseDeployment(changed.writer, "ns", "chat")).toEqual({ kind: "changed" });
    expect(changed.calls).toEqual(["get 1", "pause 1", "get 2"]);
    const paused = api([read("1", 1, true)], []);
    expect(await pauseDeployment(paused.writer, "ns", "chat")).toEqual({ kind: "foundPaused" });
    expect(paused.calls).toEqual(["get 1"]);
  });

  it("gives up after 3 conflicts and tells a refused write from a missing Deployment", async () => {
    const busy = api([read("1"), read("2"), read("3")], [409, 409, 409]);
    expect(await pauseDeployment(busy.writer, "ns", "chat")).toMatchObject({ kind: "failed", error: expect.stringContaining("3 times (409 Conflict)") });
    const denied = api([read("1")], [403]);
    expect(await pauseDeployment(denied.writer, "ns", "chat")).toMatchObject({ kind: "failed", error: expect.stringContaining("needs patch on deployments") });
    const gone = api([], []);
    expect(await pauseDeployment(gone.writer, "ns", "chat")).toMatchObject({ kind: "failed", error: "Deployment chat was not found" });
  });
});

describe("churnRatios", () => {
  const side = (connectionMinutes: number, churn: string, joins: number, joinErrorRatio: string) => ({
    revisions: ["x"], pods: 1, connectionMinutes, disconnects: 0, leaves: 0, joins, joinErrors: 0, churnPerConnectionMinute: churn, joinErrorRatio,
  });
  it("divides the new pods' rate by the old pods' (floored at 0.01), per signal with the minimum sample only", () => {
    const status = { since: "", new: side(60, "0.1000", 100, "0.5000"), old: side(60, "0.0000", 100, "0.1000") };
    expect(churnRatios(status, GUARD)).toEqual({ churn: 10, joinErrors: 5 });
    expect(churnRatios({ ...status, old: side(59, "0.0000", 99, "0.1000") }, GUARD)).toEqual({});
  });
});
