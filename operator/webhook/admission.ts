// AdmissionReview v1 in, AdmissionReview v1 out: which pods get the sidecar, with which
// settings. Pure (the caches are passed in), so each rule has a table test.
//
// The API server sends a pod here only through one of the chart's two webhooks, each with
// its own namespaceSelector, so the path says which matched and no namespace is read:
//   /inject/policy     namespaces the operator labelled connmeter.io/has-policy=true: only pods
//                      a ConnectionPolicy's target selects are injected;
//   /inject/namespace  namespaces labelled connmeter.io/inject=enabled: every pod.
// Pods labelled connmeter.io/inject=disabled never come (objectSelector) and are skipped anyway.
import { INJECT_LABEL, withDefaults, type ConnectionPolicy } from "../api/types.js";
import type { Lister, WorkloadLike } from "../controller/cluster.js";
import { selectorMatches } from "../controller/selector.js";
import type { Pod } from "./pod-spec.js";
import { buildInjection, type InjectionSettings } from "./sidecar-patch.js";

export const POLICY_PATH = "/inject/policy";
export const NAMESPACE_PATH = "/inject/namespace";

/** Namespaces never injected, whatever their labels say (the webhook's own, and the cluster's system pods). */
export const NEVER_INJECTED = ["kube-system", "kube-public", "kube-node-lease"];

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  namespace?: string;
  dryRun?: boolean;
  object?: Pod;
}

export interface AdmissionReview {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  request?: AdmissionRequest;
  response?: AdmissionResponse;
}

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: "JSONPatch";
  /** base64 of the JSON patch. */
  patch?: string;
  warnings?: string[];
}

export interface AdmissionContext {
  policies: Lister<ConnectionPolicy>;
  deployments: Lister<WorkloadLike>;
  statefulSets: Lister<WorkloadLike>;
  /** The chart's settings, before a policy overrides them. */
  defaults: InjectionSettings;
  /** The operator's own namespace: never injected. */
  operatorNamespace: string;
}

/** What was decided, for the response, the log and the metrics. */
export interface AdmissionDecision {
  response: AdmissionResponse;
  /** injected, skipped:<why> or refused. */
  outcome: string;
  /** The policy whose settings were used, if any. */
  policy?: string;
}

/** The policy (oldest first, then by name) whose target selects the pod, with injection on. */
export function policyForPod(ctx: Pick<AdmissionContext, "policies" | "deployments" | "statefulSets">, namespace: string, labels: Record<string, string> | undefined): ConnectionPolicy | undefined {
  const rank = (p: ConnectionPolicy) => `${new Date(p.metadata.creationTimestamp ?? 0).toISOString()}/${p.metadata.name}`;
  return ctx.policies.list(namespace)
    .filter((p) => !p.metadata.deletionTimestamp && p.spec.injection?.enabled !== false)
    .sort((a, b) => rank(a).localeCompare(rank(b)))
    .find((p) => {
      const lister = p.spec.targetRef.kind === "StatefulSet" ? ctx.statefulSets : ctx.deployments;
      return selectorMatches(lister.get(namespace, p.spec.targetRef.name)?.spec?.selector, labels);
    });
}

/** The chart's settings with the policy's overrides: admin port, topic groups, port, mode, resources. */
export function settingsFor(defaults: InjectionSettings, policy: ConnectionPolicy | undefined): InjectionSettings {
  if (!policy) return defaults;
  const spec = withDefaults(policy.spec);
  const inj = policy.spec.injection ?? {};
  return {
    ...defaults,
    adminPort: spec.sidecar.adminPort,
    topicGroups: spec.topics.map((t) => t.match),
    portName: inj.port ?? defaults.portName,
    mode: inj.mode ?? defaults.mode,
    resources: {
      requests: { ...defaults.resources.requests, ...inj.resources?.requests },
      limits: { ...defaults.resources.limits, ...inj.resources?.limits },
    },
  };
}

/** Decides one AdmissionRequest. Every answer allows the pod: injection never blocks a pod the webhook chose not to change. */
export function decide(path: string, req: AdmissionRequest, ctx: AdmissionContext): AdmissionDecision {
  const allow = (outcome: string, warnings?: string[]): AdmissionDecision => ({ response: { uid: req.uid, allowed: true, ...(warnings ? { warnings } : {}) }, outcome });
  const pod = req.object;
  const namespace = req.namespace ?? pod?.metadata?.namespace ?? "";
  if (req.kind?.kind !== "Pod" || req.operation !== "CREATE" || !pod) return allow("skipped:not-a-pod-create");
  if (namespace === ctx.operatorNamespace || NEVER_INJECTED.includes(namespace)) return allow("skipped:excluded-namespace");
  if (pod.metadata?.labels?.[INJECT_LABEL] === "disabled") return allow("skipped:opted-out");
  const policy = policyForPod(ctx, namespace, pod.metadata?.labels);
  if (!policy && path !== NAMESPACE_PATH) return allow("skipped:no-policy");
  const result = buildInjection(pod, settingsFor(ctx.defaults, policy));
  const name = policy?.metadata.name;
  if (result.action === "skip") return { ...allow(`skipped:${result.reason}`), ...(name ? { policy: name } : {}) };
  if (result.action === "refuse") return { ...allow("refused", [`connmeter: sidecar not injected: ${result.reason}`]), ...(name ? { policy: name } : {}) };
  return {
    response: {
      uid: req.uid, allowed: true, patchType: "JSONPatch", patch: Buffer.from(JSON.stringify(result.ops)).toString("base64"),
      ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
    },
    outcome: "injected",
    ...(name ? { policy: name } : {}),
  };
}

/** Parses a request body into an AdmissionRequest, or says what is wrong with it. */
export function parseReview(body: string): AdmissionRequest | string {
  let review: AdmissionReview;
  try {
    review = JSON.parse(body) as AdmissionReview;
  } catch {
    return "body is not JSON";
  }
  if (review?.apiVersion !== "admission.k8s.io/v1" || review.kind !== "AdmissionReview") return "expected an admission.k8s.io/v1 AdmissionReview";
  if (!review.request || typeof review.request.uid !== "string") return "AdmissionReview has no request.uid";
  return review.request;
}

export function reviewResponse(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}
