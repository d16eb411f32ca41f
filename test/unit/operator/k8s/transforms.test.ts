import { describe, expect, it } from "vitest";
import { isOperatorAnnotation, trimHpa, trimPod, trimPolicy, trimWorkload } from "../../../../operator/k8s/transforms.js";

const managedFields = [{ manager: "kubelet", operation: "Update", fieldsType: "FieldsV1", fieldsV1: { "f:status": { "f:conditions": {} } } }];

/** A pod as the API server sends it, trimmed to a readable size but with every kind of field. */
function kubeletPod(ready: "True" | "False" | "Unknown" = "True") {
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: {
      name: "chat-7d9f-abcde", namespace: "tenant-a", uid: "0b7c4c1e-1111-2222-3333-444455556666", resourceVersion: "4242",
      generation: 1, creationTimestamp: "2026-01-01T00:00:00Z", generateName: "chat-7d9f-",
      labels: { app: "chat", "pod-template-hash": "7d9f" },
      annotations: {
        "controller.kubernetes.io/pod-deletion-cost": "17", "connmeter.io/pod-deletion-cost-by": "chat",
        "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z", "prometheus.io/scrape": "true",
      },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "chat-7d9f", uid: "x", controller: true }],
      managedFields,
    },
    spec: { nodeName: "node-3", containers: [{ name: "app", image: "chat:1", env: [{ name: "A", value: "b" }] }], volumes: [] },
    status: {
      phase: "Running", podIP: "198.18.0.7", hostIP: "198.19.0.3", qosClass: "BestEffort",
      conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: ready, lastTransitionTime: "2026-01-01T00:00:05Z" }],
      containerStatuses: [{ name: "app", ready: true, restartCount: 0, image: "chat:1", imageID: "sha256:abc" }],
    },
  };
}

describe("cache transforms", () => {
  it("keep of a pod exactly the fields the controller reads (PodLike) and its resourceVersion", () => {
    expect(JSON.parse(JSON.stringify(trimPod(kubeletPod())))).toEqual({
      metadata: {
        name: "chat-7d9f-abcde", namespace: "tenant-a", uid: "0b7c4c1e-1111-2222-3333-444455556666", resourceVersion: "4242",
        labels: { app: "chat", "pod-template-hash": "7d9f" },
        annotations: { "controller.kubernetes.io/pod-deletion-cost": "17", "connmeter.io/pod-deletion-cost-by": "chat" },
      },
      spec: { nodeName: "node-3", hasSidecar: false },
      status: { phase: "Running", podIP: "198.18.0.7", conditions: [{ type: "Ready", status: "True" }] },
    });
  });

  it("keep a pod's deletionTimestamp and any Ready status, and drop annotations when none is ours", () => {
    const pod = kubeletPod("Unknown");
    (pod.metadata as Record<string, unknown>).deletionTimestamp = "2026-01-01T00:01:00Z";
    pod.metadata.annotations = { "prometheus.io/scrape": "true" } as never;
    const t = trimPod(pod);
    expect(t.metadata.deletionTimestamp).toBe("2026-01-01T00:01:00Z");
    expect(t.metadata.annotations).toBeUndefined();
    expect(t.status?.conditions).toEqual([{ type: "Ready", status: "Unknown" }]);
  });

  it("keep of a pod whether it runs connmeter's sidecar (injected, or the chart's snippet)", () => {
    const injected = { spec: { initContainers: [{ name: "connmeter", restartPolicy: "Always" }], containers: [{ name: "app" }] } };
    const snippet = { spec: { containers: [{ name: "app" }], initContainers: [{ name: "meter", ports: [{ name: "connmeter-admin", containerPort: 9090 }] }] } };
    expect(trimPod(injected).spec?.hasSidecar).toBe(true);
    expect(trimPod(snippet).spec?.hasSidecar).toBe(true);
    expect(trimPod({ spec: { containers: [{ name: "app" }] } }).spec?.hasSidecar).toBe(false);
  });

  it("keep of a pod's containers only those waiting on something a user must fix, init containers first, messages bounded", () => {
    const pod = kubeletPod("False");
    Object.assign(pod.status, {
      initContainerStatuses: [{ name: "connmeter", state: { waiting: { reason: "CreateContainerConfigError", message: 'secret "connmeter-admin-token" not found' } } }],
      containerStatuses: [
        { name: "app", state: { waiting: { reason: "PodInitializing" } } },
        { name: "worker", state: { waiting: { reason: "CrashLoopBackOff", message: "x".repeat(5000) } } },
        { name: "idle", state: { running: { startedAt: "2026-01-01T00:00:00Z" } } },
      ],
    });
    const waiting = trimPod(pod).status?.waiting;
    expect(waiting?.map((w) => [w.container, w.reason])).toEqual([["connmeter", "CreateContainerConfigError"], ["worker", "CrashLoopBackOff"]]);
    expect(waiting?.[0]?.message).toBe('secret "connmeter-admin-token" not found');
    expect(waiting?.[1]?.message).toHaveLength(300);
    expect(trimPod(kubeletPod()).status?.waiting).toBeUndefined();
  });

  it("do not throw on objects with fields missing (a pending pod, a bare delete)", () => {
    expect(trimPod({ metadata: { name: "p", namespace: "n", resourceVersion: "1" } }).status?.conditions).toBeUndefined();
    expect(() => trimPod({})).not.toThrow();
    expect(() => trimWorkload({})).not.toThrow();
    expect(() => trimHpa({})).not.toThrow();
    expect(() => trimPolicy({ metadata: {} })).not.toThrow();
  });

  it("recognize connmeter's annotation prefixes and the deletion cost only", () => {
    expect(isOperatorAnnotation("connmeter.io/inject")).toBe(true);
    expect(isOperatorAnnotation("budget.connmeter.io/x")).toBe(true);
    expect(isOperatorAnnotation("controller.kubernetes.io/pod-deletion-cost")).toBe(true);
    expect(isOperatorAnnotation("notconnmeter.io/x")).toBe(false);
    expect(isOperatorAnnotation("connmeter.io")).toBe(false);
  });

  it("keep of a workload its replicas and selector, not its pod template", () => {
    const dep = {
      metadata: { name: "chat", namespace: "n", uid: "u", resourceVersion: "9", generation: 4, managedFields, annotations: { big: "x".repeat(1000) } },
      spec: { replicas: 3, selector: { matchLabels: { app: "chat" } }, template: { spec: { containers: [{ name: "app" }] } } },
      status: { replicas: 3, conditions: [{ type: "Available" }] },
    };
    expect(JSON.parse(JSON.stringify(trimWorkload(dep)))).toEqual({
      metadata: { name: "chat", namespace: "n", uid: "u", resourceVersion: "9" },
      spec: { replicas: 3, selector: { matchLabels: { app: "chat" } } },
    });
  });

  it("keep of an HPA its scaleTargetRef", () => {
    const hpa = { metadata: { name: "h", namespace: "n", resourceVersion: "3", managedFields }, spec: { scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, metrics: [{}] }, status: { currentReplicas: 2 } };
    expect(JSON.parse(JSON.stringify(trimHpa(hpa)))).toEqual({
      metadata: { name: "h", namespace: "n", resourceVersion: "3" },
      spec: { scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" } },
    });
  });

  it("keep a policy whole but for managedFields and kubectl's last-applied annotation, without touching the original", () => {
    const policy = {
      apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy",
      metadata: { name: "p", namespace: "n", generation: 2, finalizers: ["connmeter.io/cleanup"], managedFields, annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}", team: "a" } },
      spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" }, limits: { maxConnections: 10 } },
      status: { connections: 4, conditions: [{ type: "Metered", status: "True" }] },
    };
    const t = trimPolicy(policy);
    expect(t).toEqual({ ...policy, metadata: { name: "p", namespace: "n", generation: 2, finalizers: ["connmeter.io/cleanup"], annotations: { team: "a" } } });
    expect(policy.metadata.managedFields).toBe(managedFields);
    expect(policy.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]).toBe("{}");
  });
});
