// Join-flood protection and the rollout guard end to end (issue 18): the demo app with the
// sidecar, the official phoenix client, the operator as a process watching one namespace.
// - FloodDetected: once the operator knows a baseline, a burst of joins turns it True with the
//   numbers and an Event, every sidecar of the target gets the tighter buckets (GET /config),
//   and it clears after the cooldown.
// - RolloutChurn with action pause: a rollout whose new pod refuses joins (its clients join
//   `denied:*`, which the demo app refuses: a release whose joins fail) is paused once, with an
//   Event; a user's `kubectl rollout resume` is not undone. A rollout whose new pods behave like
//   the old ones is judged ChurnWithinRatio and not paused.
// - The chart's ValidatingAdmissionPolicy on the real API server: the operator's ServiceAccount
//   may set spec.paused: true on a Deployment and nothing else.
// After each fault: the operator still answers /healthz, and another policy's status still
// follows its pods. Both tests run at once (the flood test waits minutes for its baseline);
// every load loop is a fixed number of sockets and joins.
import type { V1Pod } from "@kubernetes/client-node";
import type { Socket } from "phoenix";
import { afterAll, beforeAll, describe, inject, it, type ExpectStatic } from "vitest";
import type { PolicyStatus } from "../../operator/api/types.js";
import { applyYaml, createNamespace, deleteNamespace, describeNamespace, kube, listPods, requireBuilt, waitFor, waitForPodsReady } from "../env/e2e-helpers.js";
import { helmTemplate, kubectlWith } from "../env/helm.js";
import { applyObjects } from "../env/kube.js";
import { connectionPolicy, meteredAppDeployment } from "../env/manifests.js";
import { startOperator, stopOperators, type OperatorProcess } from "../env/operator-process.js";
import { connected, join, phoenixSocket } from "../support/phoenix-client.js";

const TOKEN = "e2e-protection-token";
const INTERVAL_S = 2;
const sidecarEnv = { CONNMETER_ADMIN_TOKEN: TOKEN };

let ns = "";
let operator: OperatorProcess;
/** Every socket the tests open (closed at the end); each test also keeps its own. */
const allSockets: Socket[] = [];

async function policyStatus(name: string): Promise<PolicyStatus> {
  const p = (await kube().custom.getNamespacedCustomObject({ group: "connmeter.io", version: "v1alpha1", namespace: ns, plural: "connectionpolicies", name })) as { status?: PolicyStatus };
  return p.status ?? {};
}

async function condition(policy: string, type: string) {
  return (await policyStatus(policy)).conditions?.find((c) => c.type === type);
}

/** The operator's events.k8s.io Events about `policy` with `reason`. */
function events(policy: string, reason: string): { note?: string }[] {
  const list = JSON.parse(kubectlWith(inject("kubeconfig"), ["get", "events.v1.events.k8s.io", "-n", ns, "-o", "json"])) as { items: { reason?: string; note?: string; regarding?: { kind?: string; name?: string } }[] };
  return list.items.filter((e) => e.reason === reason && e.regarding?.kind === "ConnectionPolicy" && e.regarding.name === policy);
}

async function client(pod: V1Pod, mine: Socket[]): Promise<Socket> {
  const s = phoenixSocket(`http://${pod.status!.podIP}:4001`);
  allSockets.push(s);
  mine.push(s);
  await connected(s);
  return s;
}

/** `socketCount` sockets on `pod`, each joining `joins` topics `<prefix><socket>-<i>` one after another; the join replies. */
async function joinBurst(pod: V1Pod, socketCount: number, joins: number, prefix: string, mine: Socket[]): Promise<string[]> {
  const replies = await Promise.all(Array.from({ length: socketCount }, async (_, s) => {
    const socket = await client(pod, mine);
    const out: string[] = [];
    for (let i = 0; i < joins; i++) out.push(await join(socket.channel(`${prefix}${s}-${i}`)));
    return out;
  }));
  return replies.flat();
}

/**
 * A one-replica Deployment `name` under a policy with rolloutGuard (action pause), rolled out
 * from v1 to v2 with both revisions running. At 1 replica the default maxUnavailable (25 %)
 * rounds down to 0: the old pod stays until the new one is available, which minReadySeconds
 * puts 5 minutes away (under the default progressDeadlineSeconds, 600, as the API server
 * requires). Returns once the operator has seen v1 alone (a revision it saw from the start is
 * not "new") and has scraped both pods once (the new pod's first counters are its baseline).
 */
async function rollOutBesideOld(name: string): Promise<{ old: V1Pod; fresh: V1Pod }> {
  const deployment = (release: string) => meteredAppDeployment({ name, replicas: 1, minReadySeconds: 300, appEnv: { RELEASE: release }, sidecarEnv });
  const churnReason = async () => (await condition(name, "RolloutChurn"))?.reason;
  await applyYaml(ns, deployment("v1"));
  const [old] = (await waitForPodsReady(ns, `app=${name}`, 1, 90_000)) as [V1Pod];
  await applyYaml(ns, connectionPolicy({
    name, scrapeIntervalSeconds: INTERVAL_S,
    spec: { rolloutGuard: { maxChurnRatio: 2, minConnectionMinutes: 100000, minJoins: 20, action: "pause" } },
  }));
  await waitFor(`RolloutChurn NoRollout (${name})`, async () => (await churnReason()) === "NoRollout", 30_000, { explain });
  await applyYaml(ns, deployment("v2"));
  const both = await waitForPodsReady(ns, `app=${name}`, 2, 90_000);
  const fresh = both.find((p) => p.metadata!.name !== old.metadata!.name)!;
  await waitFor(`RolloutChurn CollectingSample (${name})`, async () => (await churnReason()) === "CollectingSample", 30_000, { explain });
  return { old, fresh };
}

const explain = async () => `${await describeNamespace(ns)}\noperator log (tail):\n${operator.logs().slice(-4000)}`;

// The two tests check the invariants in turn (each adds one connection to policy "other").
let invariantsTurn = Promise.resolve();

/** The operator still answers /healthz, and policy "other" still counts a new connection. */
function checkInvariants(expect: ExpectStatic, after: string): Promise<void> {
  const run = async () => {
    const health = await fetch(`http://127.0.0.1:${operator.ports.health}/healthz`);
    expect(health.status, `operator /healthz after ${after}`).toBe(200);
    const [pod] = await listPods(ns, "app=other");
    const s = await client(pod!, []);
    await waitFor(`policy other to count 1 connection after ${after}`, async () => (await policyStatus("other")).connections === 1, 30_000, { explain });
    s.disconnect();
    await waitFor(`policy other to count 0 connections after ${after}`, async () => (await policyStatus("other")).connections === 0, 30_000, { explain });
  };
  const mine = invariantsTurn.then(run);
  invariantsTurn = mine.catch(() => undefined);
  return mine;
}

beforeAll(async () => {
  requireBuilt("dist/operator/main.js", "dist/sidecar/main.js", "dist/test/support/phoenix-server-main.js");
  ns = await createNamespace("protect", { deleteAfterTest: false });
  await applyYaml(ns, meteredAppDeployment({ name: "other", replicas: 1, sidecarEnv }));
  await applyYaml(ns, connectionPolicy({ name: "other", scrapeIntervalSeconds: INTERVAL_S }));
  await waitForPodsReady(ns, "app=other", 1, 90_000);
  operator = await startOperator({ kubeconfig: inject("kubeconfig"), namespace: ns, token: TOKEN });
});

afterAll(async () => {
  for (const s of allSockets.splice(0)) s.disconnect();
  await stopOperators();
  if (ns) await deleteNamespace(ns);
});

describe("join-flood protection and the rollout guard", () => {
  it.concurrent("FloodDetected: a burst of joins over the baseline throttles every sidecar, then clears after the cooldown", async ({ expect }) => {
    const mine: Socket[] = [];
    await applyYaml(ns, meteredAppDeployment({ name: "chat", replicas: 2, sidecarEnv }));
    const pods = await waitForPodsReady(ns, "app=chat", 2, 90_000);
    await applyYaml(ns, connectionPolicy({
      name: "chat", scrapeIntervalSeconds: INTERVAL_S,
      spec: { floodProtection: { spikeFactor: 2, minRatePerSecond: 2, cooldownSeconds: 10, action: "throttle" } },
    }));
    // Judged once 5 minutes of rates are known, ending a minute ago (MIN_BASELINE_MS, SPIKE_WINDOW_MS).
    await waitFor("FloodDetected CollectingBaseline", async () => (await condition("chat", "FloodDetected"))?.reason === "CollectingBaseline", 30_000, { explain });
    await waitFor("FloodDetected RateNormal (a baseline of 0 joins/s)", async () => (await condition("chat", "FloodDetected"))?.reason === "RateNormal", 480_000, { intervalMs: 2000, explain });

    // 2 pods × 5 sockets × 30 joins: 300 joins in seconds, 5/s over the minute against a threshold of max(2/s, 2 × 0).
    const replies = await Promise.all(pods.map((p) => joinBurst(p, 5, 30, "room:flood-", mine)));
    expect(replies.flat().filter((r) => r === "ok")).toHaveLength(300);
    const flood = await waitFor("FloodDetected True", async () => {
      const c = await condition("chat", "FloodDetected");
      return c?.status === "True" ? c : undefined;
    }, 30_000, { explain });
    console.log(`e2e flood: ${flood.reason}: ${flood.message}`);
    expect(flood.reason).toBe("JoinSpike");
    expect(flood.message).toMatch(/joins \d+(\.\d+)?\/s over the last minute, threshold 2\/s \(max of floor 2\/s and 2 × 0\/s over the previous hour\)/);
    // the threshold split over 2 pods: 1 upgrade/s and 1 join/s each
    expect(flood.message).toContain("Throttling every pod to 1 upgrades/s and 1 joins/s");
    await waitFor("a FloodDetected Event", async () => events("chat", "FloodDetected").length === 1, 15_000, { explain });
    for (const p of pods) {
      const config = await waitFor(`the throttle's buckets on pod ${p.metadata!.name}`, async () => {
        const res = await fetch(`http://${p.status!.podIP}:9090/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const c = (await res.json()) as Record<string, unknown>;
        return c.upgradeRatePerSecond === 1 ? c : undefined;
      }, 15_000, { explain });
      expect(config).toMatchObject({ upgradeRatePerSecond: 1, upgradeBurst: 1, podJoinRatePerSecond: 1, podJoinBurst: 1 });
    }
    await checkInvariants(expect, "a join flood");

    // The burst leaves the one-minute window, then the cooldown (10 s) passes.
    for (const s of mine.splice(0)) s.disconnect();
    const cleared = await waitFor("FloodDetected False again", async () => {
      const c = await condition("chat", "FloodDetected");
      return c?.status === "False" ? c : undefined;
    }, 150_000, { intervalMs: 1000, explain });
    expect(cleared.reason).toBe("RateNormal");
    await waitFor("a FloodCleared Event", async () => events("chat", "FloodCleared").length === 1, 15_000, { explain });
    for (const p of pods) {
      const c = await waitFor(`pod ${p.metadata!.name} back on its own buckets`, async () => {
        const res = await fetch(`http://${p.status!.podIP}:9090/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const body = (await res.json()) as Record<string, unknown>;
        return body.upgradeRatePerSecond === 0 ? body : undefined;
      }, 15_000, { explain });
      expect(c).toMatchObject({ upgradeRatePerSecond: 0, podJoinRatePerSecond: 0 });
    }
    await checkInvariants(expect, "the flood cleared");
  }, 900_000);

  it.concurrent("RolloutChurn with action pause: pauses a rollout whose new pods refuse joins once, and leaves a user's resume alone", async ({ expect }) => {
    const mine: Socket[] = [];
    const { old, fresh } = await rollOutBesideOld("web");
    const newRevision = fresh.metadata!.labels!["pod-template-hash"]!;

    // 25 joins on each: the old release accepts them, the new one refuses them.
    const oldReplies = await joinBurst(old, 1, 25, "room:web-", mine);
    const newReplies = await joinBurst(fresh, 1, 25, "denied:web-", mine);
    expect([oldReplies.filter((r) => r === "ok").length, newReplies.filter((r) => r === "error").length]).toEqual([25, 25]);

    const churn = await waitFor("RolloutChurn True", async () => {
      const c = await condition("web", "RolloutChurn");
      return c?.status === "True" ? c : undefined;
    }, 30_000, { explain });
    console.log(`e2e rollout guard: ${churn.reason}: ${churn.message}`);
    expect(churn.reason).toBe("ChurnAboveOld");
    expect(churn.message).toMatch(/new pods refuse 1\.0000 of joins, over 2 × the old pods' 0\.0000/);
    const rollout = await waitFor("status.rollout with the pause", async () => {
      const r = (await policyStatus("web")).rollout;
      return r?.pausedRevision ? r : undefined;
    }, 30_000, { explain });
    // judged at the first scrape with 20 joins on each side (the new pod may not have had all 25 yet)
    expect(rollout).toMatchObject({
      pausedRevision: newRevision,
      new: { revisions: [newRevision], pods: 1, joinErrorRatio: "1.0000" },
      old: { pods: 1, joins: 25, joinErrors: 0, joinErrorRatio: "0.0000" },
    });
    expect(rollout.new.joins).toBeGreaterThanOrEqual(20);
    expect(rollout.new.joinErrors).toBe(rollout.new.joins);
    const deployment = await kube().apps.readNamespacedDeployment({ name: "web", namespace: ns });
    expect(deployment.spec!.paused).toBe(true);
    const paused = await condition("web", "RolloutChurn");
    expect(paused!.message).toContain(`connmeter paused Deployment web (spec.paused: true) for revision ${newRevision}`);
    expect(paused!.message).toContain(`To go on with the rollout: kubectl rollout resume deployment/web -n ${ns}`);
    expect(paused!.message).toContain(`kubectl rollout undo deployment/web -n ${ns}`);
    await waitFor("a RolloutPaused Event", async () => events("web", "RolloutPaused").length === 1, 15_000, { explain });
    expect(events("web", "RolloutChurn")).toHaveLength(1);
    await checkInvariants(expect, "a churning rollout was paused");

    // The user decides to go on: the operator sees the resume and does not pause this revision again.
    kubectlWith(inject("kubeconfig"), ["rollout", "resume", "deployment/web", "-n", ns]);
    await waitFor("RolloutChurn to note the resume", async () => (await condition("web", "RolloutChurn"))?.message.includes("resumed since"), 30_000, { explain });
    // More refused joins on the new pod, then its sockets close (a status write carries the
    // counts): the operator judged the still-churning revision at every scrape in between.
    for (const s of mine.splice(0)) s.disconnect();
    await joinBurst(fresh, 1, 10, "denied:again-", mine);
    for (const s of mine.splice(0)) s.disconnect();
    await waitFor("status.rollout to count the 10 more refused joins", async () => ((await policyStatus("web")).rollout?.new.joinErrors ?? 0) >= 35, 90_000, { intervalMs: 1000, explain });
    expect((await kube().apps.readNamespacedDeployment({ name: "web", namespace: ns })).spec!.paused ?? false).toBe(false);
    expect(events("web", "RolloutPaused")).toHaveLength(1);
    expect((await condition("web", "RolloutChurn"))!.status).toBe("True");
    await checkInvariants(expect, "a user's resume");
  }, 600_000);

  it.concurrent("a rollout whose new pods behave like the old ones is judged ChurnWithinRatio and not paused", async ({ expect }) => {
    const mine: Socket[] = [];
    const { old, fresh } = await rollOutBesideOld("calm");

    // 25 accepted joins on each revision: the same (zero) error ratio on both sides.
    const replies = [...await joinBurst(old, 1, 25, "room:calm-old-", mine), ...await joinBurst(fresh, 1, 25, "room:calm-new-", mine)];
    expect(replies.filter((r) => r === "ok")).toHaveLength(50);
    const judged = await waitFor("RolloutChurn ChurnWithinRatio", async () => {
      const c = await condition("calm", "RolloutChurn");
      return c?.reason === "ChurnWithinRatio" ? c : undefined;
    }, 30_000, { explain });
    expect(judged.status).toBe("False");
    // Judged at every scrape from here on: a few more intervals, and still nothing paused.
    const rollout = await waitFor("status.rollout to count both sides' joins", async () => {
      const r = (await policyStatus("calm")).rollout;
      return r && r.new.joins >= 25 && r.old.joins >= 25 ? r : undefined;
    }, 30_000, { explain });
    expect(rollout.pausedRevision).toBeUndefined();
    expect((await kube().apps.readNamespacedDeployment({ name: "calm", namespace: ns })).spec!.paused ?? false).toBe(false);
    expect(events("calm", "RolloutPaused")).toHaveLength(0);
    expect(events("calm", "RolloutChurn")).toHaveLength(0);
    for (const s of mine.splice(0)) s.disconnect();
    await checkInvariants(expect, "a calm rollout");
  }, 600_000);

  it.concurrent("the chart's ValidatingAdmissionPolicy lets the operator's ServiceAccount only set spec.paused: true on a Deployment", async ({ expect }) => {
    const kubeconfig = inject("kubeconfig");
    const name = `vap-${ns}`;
    const user = `system:serviceaccount:${ns}:${name}`;
    const objs = helmTemplate({ fullnameOverride: name }, ["--namespace", ns]).filter((o) => o.metadata?.name === `${name}-deployment-pause`);
    expect(objs.map((o) => o.kind).sort()).toEqual(["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);
    await applyObjects(kube().kc, objs);
    try {
      // The ServiceAccount with the chart's deployments rule (get, patch), and a Deployment of 0 replicas to patch.
      await applyYaml(ns, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: ${name}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: ${name}}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get, patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ${name}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ${name}}
subjects: [{kind: ServiceAccount, name: ${name}, namespace: ${ns}}]
` + meteredAppDeployment({ name: "idle", replicas: 0 }).replace(/^/, "---"));
      const patch = (body: unknown, as: string[] = ["--as", user]): string => {
        try {
          kubectlWith(kubeconfig, [...as, "-n", ns, "patch", "deployment", "idle", "--type=merge", "-p", JSON.stringify(body)]);
          return "admitted";
        } catch (err) {
          return (err as Error).message;
        }
      };
      // The API server loads a new policy within seconds; a harmless change tells when it is in
      // force (a new value each try: one admitted before that would make the same value no change).
      let limit = 3;
      await waitFor("the policy to refuse a revisionHistoryLimit change", async () => patch({ spec: { revisionHistoryLimit: limit++ } }).includes("may change only spec.paused") || undefined, 30_000, { intervalMs: 500, explain });
      expect(patch({ spec: { replicas: 2 } })).toContain("the connmeter operator may change only spec.paused of a Deployment");
      expect(patch({ spec: { template: { metadata: { labels: { app: "idle", extra: "x" } } } } })).toContain("may change only spec.paused");
      expect(patch({ metadata: { labels: { team: "x" } } })).toContain("may not change a Deployment's labels, annotations");
      expect(patch({ metadata: { annotations: { note: "x" } } })).toContain("may not change a Deployment's labels, annotations");
      expect(patch({ spec: { paused: true } })).toBe("admitted");
      expect(patch({ spec: { paused: false } })).toContain("may only pause a Deployment (spec.paused true), never resume one");
      // Nobody else is matched: the admin resumes it.
      expect(patch({ spec: { paused: false } }, [])).toBe("admitted");
      const idle = await kube().apps.readNamespacedDeployment({ name: "idle", namespace: ns });
      expect([idle.spec!.replicas, idle.spec!.paused ?? false, idle.metadata!.labels?.team]).toEqual([0, false, undefined]);
    } finally {
      kubectlWith(kubeconfig, ["delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", `${name}-deployment-pause`, "--ignore-not-found"]);
    }
  });
});
