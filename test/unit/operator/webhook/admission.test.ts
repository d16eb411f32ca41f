import { describe, expect, it } from "vitest";
import type { ConnectionPolicy } from "../../../../operator/api/types.js";
import type { Lister, WorkloadLike } from "../../../../operator/controller/cluster.js";
import { NAMESPACE_PATH, POLICY_PATH, decide, parseReview, settingsFor, type AdmissionContext, type AdmissionRequest } from "../../../../operator/webhook/admission.js";
import type { Pod } from "../../../../operator/webhook/pod-spec.js";
import type { InjectionSettings } from "../../../../operator/webhook/sidecar-patch.js";

function lister<T extends { metadata?: { name?: string; namespace?: string } }>(items: T[]): Lister<T> {
  return {
    get: (ns, name) => items.find((i) => i.metadata?.namespace === ns && i.metadata?.name === name),
    list: (ns) => items.filter((i) => ns === undefined || i.metadata?.namespace === ns),
  };
}

const DEFAULTS: InjectionSettings = {
  image: "connmeter/sidecar:0.1.0", listenPort: 4001, adminPort: 9090, resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
  portName: "http", mode: "named-port", awaitBudgetSeconds: 30, topicGroups: [], adminTokenSecret: "connmeter-admin-token", defaultUpstreamPort: 4000,
};

function policy(name: string, target: string, over: Partial<ConnectionPolicy["spec"]> = {}): ConnectionPolicy {
  return { metadata: { name, namespace: "chat", creationTimestamp: "2026-12-01T00:00:00Z" }, spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: target }, ...over } };
}

const deployment = (name: string, app: string): WorkloadLike => ({ metadata: { name, namespace: "chat" }, spec: { replicas: 2, selector: { matchLabels: { app } } } });

function ctx(policies: ConnectionPolicy[]): AdmissionContext {
  return {
    policies: lister(policies), deployments: lister([deployment("chat", "chat"), deployment("web", "web")]), statefulSets: lister<WorkloadLike>([]),
    defaults: DEFAULTS, operatorNamespace: "connmeter-system",
  };
}

function request(labels: Record<string, string>, namespace = "chat"): AdmissionRequest {
  const object: Pod = { metadata: { generateName: "x-", labels }, spec: { containers: [{ name: "app", ports: [{ name: "http", containerPort: 4000 }] }] } };
  return { uid: "u1", kind: { group: "", version: "v1", kind: "Pod" }, operation: "CREATE", namespace, object };
}

const patchOf = (r: { patch?: string }) => JSON.parse(Buffer.from(r.patch!, "base64").toString("utf8")) as { op: string; path: string; value?: unknown }[];

describe("decide: which pods get the sidecar", () => {
  const policies = [policy("chat-meter", "chat", { sidecar: { adminPort: 9191 }, topics: [{ match: "room:*" }] })];
  it.each([
    ["a pod of a policy's target", POLICY_PATH, { app: "chat" }, "chat", "injected"],
    ["a pod no policy targets, in a policy namespace", POLICY_PATH, { app: "web" }, "chat", "skipped:no-policy"],
    ["any pod of a namespace labelled connmeter.io/inject=enabled", NAMESPACE_PATH, { app: "web" }, "chat", "injected"],
    ["a pod labelled connmeter.io/inject=disabled", NAMESPACE_PATH, { app: "chat", "connmeter.io/inject": "disabled" }, "chat", "skipped:opted-out"],
    ["a pod of the operator's namespace", NAMESPACE_PATH, { app: "chat" }, "connmeter-system", "skipped:excluded-namespace"],
    ["a pod of kube-system", NAMESPACE_PATH, { k8s: "dns" }, "kube-system", "skipped:excluded-namespace"],
  ])("%s", (_what, path, labels, namespace, outcome) => {
    const d = decide(path, request(labels, namespace), ctx(policies));
    expect(d.outcome).toBe(outcome);
    expect(d.response).toMatchObject({ uid: "u1", allowed: true });
    if (outcome === "injected") expect(d.response.patchType).toBe("JSONPatch");
    else expect(d.response.patch).toBeUndefined();
  });

  it("uses the policy's admin port and topic groups", () => {
    const d = decide(POLICY_PATH, request({ app: "chat" }), ctx(policies));
    expect(d.policy).toBe("chat-meter");
    const sidecar = patchOf(d.response).find((o) => o.path === "/spec/initContainers")!.value as [{ ports: { containerPort: number }[]; env: { name: string; value?: string }[] }];
    expect(sidecar[0].ports[1]!.containerPort).toBe(9191);
    expect(sidecar[0].env).toContainEqual({ name: "CONNMETER_TOPIC_GROUPS", value: "room:*" });
  });

  it("does not inject for a policy with spec.injection.enabled false, nor for one being deleted", () => {
    expect(decide(POLICY_PATH, request({ app: "chat" }), ctx([policy("p", "chat", { injection: { enabled: false } })])).outcome).toBe("skipped:no-policy");
    const deleting = policy("p", "chat");
    deleting.metadata.deletionTimestamp = "2026-12-02T00:00:00Z";
    expect(decide(POLICY_PATH, request({ app: "chat" }), ctx([deleting])).outcome).toBe("skipped:no-policy");
  });

  it("answers updates and other kinds without a patch", () => {
    expect(decide(POLICY_PATH, { ...request({ app: "chat" }), operation: "UPDATE" }, ctx(policies)).outcome).toBe("skipped:not-a-pod-create");
  });
});

describe("settingsFor", () => {
  it("merges the policy's resources over the chart's, keeping both requests and limits", () => {
    const s = settingsFor(DEFAULTS, policy("p", "chat", { injection: { port: "web", resources: { limits: { cpu: "1" } } } }));
    expect(s.resources).toEqual({ requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi", cpu: "1" } });
    expect(s.portName).toBe("web");
  });
});

describe("parseReview", () => {
  it("says what is wrong with a body that is not an AdmissionReview v1", () => {
    expect(parseReview("{")).toBe("body is not JSON");
    expect(parseReview(JSON.stringify({ apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview" }))).toBe("expected an admission.k8s.io/v1 AdmissionReview");
    expect(parseReview(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {} }))).toBe("AdmissionReview has no request.uid");
  });
});
