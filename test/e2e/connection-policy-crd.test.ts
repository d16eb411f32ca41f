// The ConnectionPolicy CRD on a real API server: valid policies are stored with their defaults
// filled in; invalid ones are refused with a message naming the field and the rule.
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { request, type RequestOptions } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, deleteNamespace, kube } from "../env/e2e-helpers.js";
import { apiMessage, apiStatus } from "../env/kube.js";

const GROUP = "connmeter.io";
const VERSION = "v1alpha1";
const PLURAL = "connectionpolicies";

type Spec = Record<string, unknown>;

let ns = "";
let seq = 0;

beforeAll(async () => {
  ns = await createNamespace("crd", { deleteAfterTest: false });
});
afterAll(async () => {
  if (ns) await deleteNamespace(ns);
});

function policy(spec: Spec, name = `policy-${++seq}`) {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: "ConnectionPolicy", metadata: { name }, spec };
}

async function create(spec: Spec, fieldValidation?: string): Promise<{ name: string; spec: Spec }> {
  const body = policy(spec);
  const created = (await kube().custom.createNamespacedCustomObject({
    group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body, ...(fieldValidation ? { fieldValidation } : {}),
  })) as { spec: Spec };
  return { name: body.metadata.name, spec: created.spec };
}

async function readBack(name: string): Promise<{ spec: Spec; status?: Record<string, unknown>; metadata: { generation?: number } }> {
  return (await kube().custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name })) as never;
}

/** Creates the policy expecting a refusal; returns the status code and the API server's message. */
async function refusal(spec: Spec, fieldValidation?: string): Promise<{ code: number | undefined; message: string }> {
  try {
    const { name } = await create(spec, fieldValidation);
    throw new Error(`policy ${name} was accepted: ${JSON.stringify(spec)}`);
  } catch (err) {
    if (apiStatus(err) === undefined) throw err;
    return { code: apiStatus(err), message: apiMessage(err) };
  }
}

const target = { kind: "Deployment", name: "chat" };

describe("valid ConnectionPolicies", () => {
  it("fills in the defaults of a minimal policy", async () => {
    const { name } = await create({ targetRef: target });
    const back = await readBack(name);
    expect(back.spec).toEqual({
      targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" },
      sidecar: { adminPort: 9090 },
      scrapeIntervalSeconds: 5,
    });
  });

  it("fills in the scaling defaults and keeps absent limits absent", async () => {
    const { name } = await create({ targetRef: target, scaling: { maxReplicas: 10, targetConnectionsPerPod: 1000 } });
    const back = await readBack(name);
    expect(back.spec.scaling).toEqual({
      minReplicas: 1,
      maxReplicas: 10,
      targetConnectionsPerPod: 1000,
      scaleUpStabilizationSeconds: 0,
      scaleDownStabilizationSeconds: 300,
      // The HPA's default behavior.
      scaleUpPolicies: [{ type: "Pods", value: 4, periodSeconds: 15 }, { type: "Percent", value: 100, periodSeconds: 15 }],
      scaleUpSelectPolicy: "Max",
      scaleDownPolicies: [{ type: "Percent", value: 100, periodSeconds: 15 }],
      scaleDownSelectPolicy: "Max",
      connectionAwareScaleDown: true,
    });
    expect(back.spec.limits).toBeUndefined();
    expect(back.spec.topics).toBeUndefined();
  });

  it("keeps every field of a full policy as written", async () => {
    const spec = {
      targetRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: "chat" },
      sidecar: { adminPort: 9191 },
      scrapeIntervalSeconds: 2,
      topics: [{ match: "room:*", maxChannels: 5000 }, { match: "user:*" }, { match: "*" }],
      limits: { maxConnectionsPerPod: 2000, maxConnections: 10000, rejectAtPercent: 90 },
      scaling: {
        minReplicas: 2, maxReplicas: 20, targetConnectionsPerPod: 1500,
        scaleUpStabilizationSeconds: 30, scaleDownStabilizationSeconds: 600, connectionAwareScaleDown: false,
        scaleUpPolicies: [{ type: "Pods", value: 2, periodSeconds: 60 }], scaleUpSelectPolicy: "Min",
        scaleDownPolicies: [{ type: "Percent", value: 10, periodSeconds: 1800 }, { type: "Pods", value: 1, periodSeconds: 1 }], scaleDownSelectPolicy: "Disabled",
      },
    };
    const { name } = await create(spec);
    expect((await readBack(name)).spec).toEqual(spec);
  });

  it("accepts the boundaries of every rule", async () => {
    const spec = {
      targetRef: target,
      limits: { maxConnectionsPerPod: 100, maxConnections: 100, rejectAtPercent: 100 },
      scaling: { minReplicas: 3, maxReplicas: 3, targetConnectionsPerPod: 100 },
      topics: Array.from({ length: 64 }, (_, i) => ({ match: `t${i}:*` })),
    };
    const { name } = await create(spec);
    expect((await readBack(name)).spec.limits).toEqual(spec.limits);
    const low = await create({ targetRef: target, limits: { rejectAtPercent: 1 } });
    expect(low.spec.limits).toEqual({ rejectAtPercent: 1 });
  });

  it("keeps status behind the status subresource and shows it in the printer columns", async () => {
    const { name } = await create({ targetRef: target });
    const at = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace(".000Z", "Z");
    const status = {
      observedGeneration: 1, connections: 12, channels: 30, meteredPods: 3, replicas: 3, desiredReplicas: 4, lastUpdateTime: at,
      conditions: [{ type: "Ready", status: "True", observedGeneration: 1, lastTransitionTime: at, reason: "Metered", message: "3 of 3 pods answered GET /stats" }],
    };
    await kube().custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    // A status written through the main resource is ignored.
    await kube().custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status: { connections: 999 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const back = await readBack(name);
    expect(back.status).toEqual(status);
    expect(back.metadata.generation).toBe(1);

    const table = await getTable(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}/${name}`);
    expect(table.columnDefinitions.map((c) => c.name)).toEqual(["Name", "Target", "Ready", "Reason", "Connections", "Channels", "Pods", "Replicas", "Desired", "Updated", "Conn-Seconds-Today", "Peak-Today", "Age"]);
    expect(table.rows[0]?.cells.slice(0, 9)).toEqual([name, "chat", "True", "Metered", 12, 30, 3, 3, 4]);
  });

  // --- usage, join floods, flood detection, rollout guard (issue 18) ---
  it("fills in floodProtection's and rolloutGuard's defaults, keeps the join buckets, and stores status.usage and status.rollout (wide columns)", async () => {
    const { name } = await create({
      targetRef: target, limits: { joinRatePerSocket: 5, joinBurstPerSocket: 10, joinRatePerPod: 500, joinBurstPerPod: 1000 }, floodProtection: {}, rolloutGuard: { maxChurnRatio: 1.5 },
    });
    const back = await readBack(name);
    expect(back.spec.limits).toEqual({ joinRatePerSocket: 5, joinBurstPerSocket: 10, joinRatePerPod: 500, joinBurstPerPod: 1000 });
    expect(back.spec.floodProtection).toEqual({ spikeFactor: 10, minRatePerSecond: 20, cooldownSeconds: 300, action: "none" });
    expect(back.spec.rolloutGuard).toEqual({ maxChurnRatio: 1.5, minConnectionMinutes: 60, minJoins: 100, action: "none" });
    const side = (revision: string) => ({
      revisions: [revision], pods: 2, connectionMinutes: 120, disconnects: 3, leaves: 1, joins: 400, joinErrors: 2, churnPerConnectionMinute: "0.0333", joinErrorRatio: "0.0050",
    });
    const status = {
      usage: { period: "2026-03-01", connectionSeconds: 7200, peakConnections: 40, peakTime: "2026-03-01T10:00:00Z", groups: [{ name: "room:*", channelSeconds: 3600 }, { name: "_other", channelSeconds: 10 }] },
      rollout: { since: "2026-03-01T10:00:00Z", new: side("5d8f9c7b6d"), old: side("7c9d8b5f4a") },
    };
    await kube().custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    expect((await readBack(name)).status).toEqual(status);
    const table = await getTable(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}/${name}`);
    const col = (n: string) => table.columnDefinitions.findIndex((c) => c.name === n);
    expect([table.rows[0]?.cells[col("Conn-Seconds-Today")], table.rows[0]?.cells[col("Peak-Today")]]).toEqual([7200, 40]);
  });
  // --- end issue 18 ---
});

interface RefusalCase {
  readonly name: string;
  readonly spec: Spec;
  /** Every string must appear in the API server's message. */
  readonly message: readonly string[];
  readonly fieldValidation?: string;
  readonly code?: number;
}

const scaling = { maxReplicas: 10, targetConnectionsPerPod: 100 };

const refusals: RefusalCase[] = [
  { name: "a policy without targetRef", spec: { sidecar: {} }, message: ["spec.targetRef", "Required value"] },
  { name: "a targetRef without name", spec: { targetRef: { kind: "Deployment" } }, message: ["spec.targetRef.name", "Required value"] },
  { name: "an empty targetRef name", spec: { targetRef: { kind: "Deployment", name: "" } }, message: ["spec.targetRef.name", "at least 1 chars long"] },
  { name: "a DaemonSet target", spec: { targetRef: { kind: "DaemonSet", name: "chat" } }, message: ["spec.targetRef.kind", "spec.targetRef.kind must be Deployment or StatefulSet"] },
  { name: "a target outside apps/v1", spec: { targetRef: { apiVersion: "apps/v1beta2", kind: "Deployment", name: "chat" } }, message: ["spec.targetRef.apiVersion", "must be apps/v1"] },
  { name: "minReplicas above maxReplicas", spec: { targetRef: target, scaling: { ...scaling, minReplicas: 11 } }, message: ["spec.scaling.minReplicas", "spec.scaling.minReplicas (11) must be less than or equal to spec.scaling.maxReplicas (10)"] },
  { name: "scaling without targetConnectionsPerPod", spec: { targetRef: target, scaling: { maxReplicas: 3 } }, message: ["spec.scaling.targetConnectionsPerPod", "Required value"] },
  { name: "a zero targetConnectionsPerPod", spec: { targetRef: target, scaling: { ...scaling, targetConnectionsPerPod: 0 } }, message: ["spec.scaling.targetConnectionsPerPod", "greater than or equal to 1"] },
  { name: "a zero minReplicas", spec: { targetRef: target, scaling: { ...scaling, minReplicas: 0 } }, message: ["spec.scaling.minReplicas", "greater than or equal to 1"] },
  { name: "a negative scale-down window", spec: { targetRef: target, scaling: { ...scaling, scaleDownStabilizationSeconds: -1 } }, message: ["spec.scaling.scaleDownStabilizationSeconds", "greater than or equal to 0"] },
  { name: "an unknown rate policy type", spec: { targetRef: target, scaling: { ...scaling, scaleUpPolicies: [{ type: "Replicas", value: 2, periodSeconds: 15 }] } }, message: ["spec.scaling.scaleUpPolicies[0].type", 'Unsupported value: "Replicas"', '"Pods"', '"Percent"'] },
  { name: "a rate policy period over 30 minutes", spec: { targetRef: target, scaling: { ...scaling, scaleDownPolicies: [{ type: "Pods", value: 1, periodSeconds: 1801 }] } }, message: ["spec.scaling.scaleDownPolicies[0].periodSeconds", "less than or equal to 1800"] },
  { name: "a rate policy of 0 pods", spec: { targetRef: target, scaling: { ...scaling, scaleUpPolicies: [{ type: "Pods", value: 0, periodSeconds: 15 }] } }, message: ["spec.scaling.scaleUpPolicies[0].value", "greater than or equal to 1"] },
  { name: "an empty rate policy list", spec: { targetRef: target, scaling: { ...scaling, scaleDownPolicies: [] } }, message: ["spec.scaling.scaleDownPolicies", "at least 1 items"] },
  { name: "an unknown select policy", spec: { targetRef: target, scaling: { ...scaling, scaleUpSelectPolicy: "Average" } }, message: ["spec.scaling.scaleUpSelectPolicy", 'Unsupported value: "Average"'] },
  { name: "rejectAtPercent 0", spec: { targetRef: target, limits: { rejectAtPercent: 0 } }, message: ["spec.limits.rejectAtPercent", "spec.limits.rejectAtPercent must be between 1 and 100"] },
  { name: "rejectAtPercent 101", spec: { targetRef: target, limits: { rejectAtPercent: 101 } }, message: ["spec.limits.rejectAtPercent", "must be between 1 and 100"] },
  { name: "a per-pod cap above the cluster cap", spec: { targetRef: target, limits: { maxConnectionsPerPod: 500, maxConnections: 100 } }, message: ["spec.limits.maxConnectionsPerPod", "spec.limits.maxConnectionsPerPod (500) must be less than or equal to spec.limits.maxConnections (100)"] },
  { name: "a zero per-pod cap", spec: { targetRef: target, limits: { maxConnectionsPerPod: 0 } }, message: ["spec.limits.maxConnectionsPerPod", "greater than or equal to 1"] },
  { name: "a scaling target above the per-pod cap", spec: { targetRef: target, limits: { maxConnectionsPerPod: 50 }, scaling }, message: ["spec.scaling.targetConnectionsPerPod", "spec.scaling.targetConnectionsPerPod (100) must be less than or equal to spec.limits.maxConnectionsPerPod (50)"] },
  { name: "two topic groups with the same match", spec: { targetRef: target, topics: [{ match: "room:*" }, { match: "user:*" }, { match: "room:*" }] }, message: ["spec.topics", "spec.topics[].match must be unique"] },
  { name: "a topic group without match", spec: { targetRef: target, topics: [{ maxChannels: 3 }] }, message: ["spec.topics[0].match", "Required value"] },
  { name: "a negative maxChannels", spec: { targetRef: target, topics: [{ match: "room:*", maxChannels: -1 }] }, message: ["spec.topics[0].maxChannels", "greater than or equal to 0"] },
  { name: "65 topic groups", spec: { targetRef: target, topics: Array.from({ length: 65 }, (_, i) => ({ match: `t${i}` })) }, message: ["spec.topics", "must have at most 64 items"] },
  { name: "an admin port above 65535", spec: { targetRef: target, sidecar: { adminPort: 70000 } }, message: ["spec.sidecar.adminPort", "less than or equal to 65535"] },
  { name: "a zero scrape interval", spec: { targetRef: target, scrapeIntervalSeconds: 0 }, message: ["spec.scrapeIntervalSeconds", "greater than or equal to 1"] },
  // --- issue 18 ---
  { name: "a zero join rate per socket", spec: { targetRef: target, limits: { joinRatePerSocket: 0 } }, message: ["spec.limits.joinRatePerSocket", "greater than or equal to 1"] },
  { name: "a spike factor of 1", spec: { targetRef: target, floodProtection: { spikeFactor: 1 } }, message: ["spec.floodProtection.spikeFactor", "greater than or equal to 2"] },
  { name: "an unknown flood action", spec: { targetRef: target, floodProtection: { action: "block" } }, message: ["spec.floodProtection.action", 'Unsupported value: "block"'] },
  { name: "a churn ratio under 1", spec: { targetRef: target, rolloutGuard: { maxChurnRatio: 0.5 } }, message: ["spec.rolloutGuard.maxChurnRatio", "greater than or equal to 1"] },
  // --- end issue 18 ---
  { name: "a string where a number belongs", spec: { targetRef: target, limits: { maxConnections: "lots" } }, message: ["spec.limits.maxConnections", "must be of type integer"] },
  {
    name: "an unknown field (strict field validation)", spec: { targetRef: target, maxConnection: 5 }, fieldValidation: "Strict",
    message: ['unknown field "spec.maxConnection"'], code: 400,
  },
];

describe("invalid ConnectionPolicies are refused", () => {
  it.each(refusals)("refuses $name", async ({ spec, message, fieldValidation, code }) => {
    const res = await refusal(spec, fieldValidation);
    expect(res.code).toBe(code ?? 422);
    for (const part of message) expect(res.message).toContain(part);
  });
});

interface Table {
  columnDefinitions: { name: string }[];
  rows: { cells: unknown[] }[];
}

/** GET as a server-side Table: what `kubectl get connpol` prints. */
async function getTable(path: string): Promise<Table> {
  const kc = kube().kc;
  const server = kc.getCurrentCluster()?.server ?? "";
  const opts: RequestOptions = { headers: { Accept: "application/json;as=Table;v=v1;g=meta.k8s.io" } };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = request(`${server}${path}`, opts, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(body) as Table) : reject(new Error(`${res.statusCode}: ${body}`))));
    });
    req.on("error", reject);
    req.end();
  });
}
