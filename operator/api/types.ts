// The ConnectionPolicy API (crds/connectionpolicies.connmeter.io.yaml) as TypeScript types, and
// the names other parts rely on: condition types, reasons, annotations. DESIGN.md "Contracts".

export const GROUP = "connmeter.io";
export const VERSION = "v1alpha1";
export const PLURAL = "connectionpolicies";
export const KIND = "ConnectionPolicy";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Who writes the Events and the field manager of every write. */
export const REPORTING_CONTROLLER = "connmeter.io/operator";

export const DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost";
/** Marks a deletion cost connmeter wrote (value: the policy's name), so only ours are removed. */
export const DELETION_COST_OWNER_ANNOTATION = "connmeter.io/pod-deletion-cost-by";

/**
 * The operator's finalizer on a ConnectionPolicy: held until the policy's budgets are lifted
 * and its deletion costs removed (or cleanup gave up), so a policy deleted while the operator
 * is down is still cleaned up by the next one.
 */
export const CLEANUP_FINALIZER = "connmeter.io/cleanup";

export type TargetKind = "Deployment" | "StatefulSet";

export interface TopicGroupSpec {
  match: string;
  maxChannels?: number;
}

/** A rate limit on scaling, as the HPA's: at most `value` pods, or percent, per `periodSeconds`. */
export interface ScalingRatePolicy {
  type: "Pods" | "Percent";
  value: number;
  periodSeconds: number;
}

/** Which rate policy applies: the most permissive (Max), the least (Min), or none may scale (Disabled). */
export type SelectPolicy = "Max" | "Min" | "Disabled";

export interface ScalingSpec {
  minReplicas: number;
  maxReplicas: number;
  targetConnectionsPerPod: number;
  scaleUpStabilizationSeconds: number;
  scaleDownStabilizationSeconds: number;
  scaleUpPolicies: ScalingRatePolicy[];
  scaleUpSelectPolicy: SelectPolicy;
  scaleDownPolicies: ScalingRatePolicy[];
  scaleDownSelectPolicy: SelectPolicy;
  connectionAwareScaleDown: boolean;
}

/** The HPA's default rate limits (autoscaling/v2 defaults.go): up 4 pods or 100 % per 15 s, whichever is more; down 100 % per 15 s. */
export const DEFAULT_SCALE_UP_POLICIES: readonly ScalingRatePolicy[] = [
  { type: "Pods", value: 4, periodSeconds: 15 },
  { type: "Percent", value: 100, periodSeconds: 15 },
];
export const DEFAULT_SCALE_DOWN_POLICIES: readonly ScalingRatePolicy[] = [{ type: "Percent", value: 100, periodSeconds: 15 }];

export interface LimitsSpec {
  maxConnectionsPerPod?: number;
  maxConnections?: number;
  rejectAtPercent?: number;
  // --- join floods (issue 18) ---
  joinRatePerSocket?: number;
  joinBurstPerSocket?: number;
  joinRatePerPod?: number;
  joinBurstPerPod?: number;
  // --- end join floods ---
}

// --- spec.occupancy (issue 17) ---
/** spec.occupancy as written: which counts the sidecar may reveal to the app and its clients. */
export interface OccupancySpec {
  /** Topic globs clients may read counts of (a listed glob, or a topic one matches). */
  expose?: string[];
  /** Whether total connections and channels may be read. */
  totals?: boolean;
  /** Least seconds between two pushes to a subscriber; default the scrape interval. */
  intervalSeconds?: number;
}

/** spec.occupancy with defaults applied. */
export interface OccupancyPolicy {
  expose: string[];
  totals: boolean;
  intervalSeconds: number;
}

/** spec.occupancy with its defaults (the interval defaults to the scrape interval); undefined when absent. */
export function occupancyWithDefaults(o: OccupancySpec | undefined, scrapeIntervalSeconds: number): OccupancyPolicy | undefined {
  if (o === undefined) return undefined;
  return { expose: [...(o.expose ?? [])], totals: o.totals ?? false, intervalSeconds: o.intervalSeconds ?? scrapeIntervalSeconds };
}
// --- end spec.occupancy ---
// --- flood detection (issue 18) ---
/** spec.floodProtection: spike detection on the cluster's upgrade and join rates. */
export interface FloodProtectionSpec {
  /** A rate over the last minute above this × the previous hour's rate is a flood. */
  spikeFactor: number;
  /** ... and above this floor (per second), so a quiet cluster does not trip. */
  minRatePerSecond: number;
  /** The rate must stay under the threshold this long before a flood is over. */
  cooldownSeconds: number;
  /** throttle: push tighter upgrade and join buckets to every sidecar during a flood; none: report only. */
  action: "none" | "throttle";
}
// --- end flood detection ---

// --- rollout guard (issue 18) ---
/** spec.rolloutGuard: compare the churn of a rollout's new pods with the old ones'. */
export interface RolloutGuardSpec {
  /** New > this × old (churn per connection-minute, or join errors per join) sets RolloutChurn True. */
  maxChurnRatio: number;
  /** Connection-minutes each side needs before churn is judged. */
  minConnectionMinutes: number;
  /** Joins each side needs before join errors are judged. */
  minJoins: number;
  /** pause: pause the target Deployment (spec.paused) once per new revision when RolloutChurn turns True; none: report only. */
  action: "none" | "pause";
}

export interface RolloutRevisionStatus {
  /** pod-template-hash (Deployment) or controller-revision-hash (StatefulSet) values. */
  revisions: string[];
  pods: number;
  connectionMinutes: number;
  disconnects: number;
  leaves: number;
  joins: number;
  joinErrors: number;
  /** (disconnects + leaves) / connection-minutes, as a decimal string. */
  churnPerConnectionMinute: string;
  /** joinErrors / joins, as a decimal string. */
  joinErrorRatio: string;
}

/** status.rollout: while two revisions of the target run side by side. */
export interface RolloutStatus {
  since: string;
  new: RolloutRevisionStatus;
  old: RolloutRevisionStatus;
  /** action pause: the new revision connmeter paused the Deployment for (or found paused), and when; never paused twice for it. */
  pausedRevision?: string;
  pausedAt?: string;
}
// --- end rollout guard ---

/** spec with the CRD's defaults applied (the API server applies them; we apply them again for safety). */
export interface PolicySpec {
  targetRef: { apiVersion: string; kind: TargetKind; name: string };
  sidecar: { adminPort: number };
  scrapeIntervalSeconds: number;
  topics: TopicGroupSpec[];
  limits: LimitsSpec;
  scaling: ScalingSpec | undefined;
  /** spec.occupancy (issue 17); absent = the virtual topic and GET /occupancy reveal nothing. */
  occupancy?: OccupancyPolicy;
  floodProtection: FloodProtectionSpec | undefined;
  rolloutGuard: RolloutGuardSpec | undefined;
}

export type ConditionStatus = "True" | "False" | "Unknown";

export interface Condition {
  type: string;
  status: ConditionStatus;
  observedGeneration: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface PodStatus {
  name: string;
  node?: string;
  /** Absent when the sidecar never answered or its last counts are too old to use. */
  connections?: number;
  channels?: number;
  ready: boolean;
  /** The sidecar did not answer the last scrape: the counts are its last known ones. */
  stale?: boolean;
}

export interface NodeStatus {
  name: string;
  pods: number;
  connections: number;
  channels: number;
}

export interface TopicStatus {
  name: string;
  channels: number;
  /** The group's cluster-wide cap (spec.topics[].maxChannels), when set. */
  maxChannels?: number;
}

export interface CapacityStatus {
  maxConnections: number;
  connections: number;
  /** connections / maxConnections, in whole percent. */
  usedPercent: number;
}

// --- usage (issue 18) ---
/** status.usage: what the policy's pods used since the start of the UTC day. */
export interface UsageStatus {
  /** The UTC day counted, `YYYY-MM-DD`. */
  period: string;
  /** Seconds of WebSocket connections and long-poll sessions, summed over pods. */
  connectionSeconds: number;
  /** Highest cluster-wide connections seen at a scrape this day, and when. */
  peakConnections: number;
  peakTime?: string;
  /** Channel-seconds per topic group (spec.topics order), the rest under `_other`. */
  groups?: { name: string; channelSeconds: number }[];
}
// --- end usage ---

export interface PolicyStatus {
  observedGeneration?: number;
  connections?: number;
  channels?: number;
  longpoll?: number;
  replicas?: number;
  desiredReplicas?: number;
  meteredPods?: number;
  stalePods?: number;
  topics?: TopicStatus[];
  pods?: PodStatus[];
  nodes?: NodeStatus[];
  capacity?: CapacityStatus;
  conditions?: Condition[];
  lastScaleTime?: string;
  /** When the operator last wrote this status (at least every minute while it runs): how current the counts are. */
  lastUpdateTime?: string;
  /** Injection (issue 16): pods of the target running without the sidecar (not metered), at most 50. */
  podsWithoutSidecar?: string[];
  // --- usage (issue 18) ---
  usage?: UsageStatus;
  // --- end usage ---
  // --- rollout guard (issue 18) ---
  rollout?: RolloutStatus;
  // --- end rollout guard ---
}

export interface ConnectionPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    creationTimestamp?: Date | string;
    deletionTimestamp?: string;
    finalizers?: string[];
  };
  /** As written: the API server fills in the CRD's defaults, and withDefaults again. */
  spec: Partial<Omit<PolicySpec, "scaling" | "occupancy" | "floodProtection" | "rolloutGuard">> & {
    occupancy?: OccupancySpec;
    floodProtection?: Partial<FloodProtectionSpec>;
    rolloutGuard?: Partial<RolloutGuardSpec>;
    targetRef: PolicySpec["targetRef"];
    scaling?: Partial<ScalingSpec> & Pick<ScalingSpec, "maxReplicas" | "targetConnectionsPerPod">;
    /** Injection (issue 16). */
    injection?: InjectionSpec;
  };
  status?: PolicyStatus;
}

// Condition types (DESIGN.md) and reasons (CamelCase constants, one per situation).
export const COND_METERED = "Metered";
export const COND_SCALING_ACTIVE = "ScalingActive";
export const COND_SCALING_LIMITED = "ScalingLimited";
export const COND_AT_CAPACITY = "AtCapacity";
/** Whether every answering sidecar accepted its limits and budgets (PUT /config). */
export const COND_LIMITS_APPLIED = "LimitsApplied";
/** The summary `kubectl get connpol` shows: True when the counts are current and the limits and scaling work; else the first problem's reason. */
export const COND_READY = "Ready";
// --- flood detection (issue 18) ---
/** True while the cluster's upgrade or join rate is a spike over its baseline (spec.floodProtection). */
export const COND_FLOOD_DETECTED = "FloodDetected";
export const REASON_COLLECTING_BASELINE = "CollectingBaseline";
export const REASON_RATE_NORMAL = "RateNormal";
export const REASON_UPGRADE_SPIKE = "UpgradeSpike";
export const REASON_JOIN_SPIKE = "JoinSpike";
export const REASON_UPGRADE_AND_JOIN_SPIKE = "UpgradeAndJoinSpike";
export const EVENT_FLOOD_DETECTED = "FloodDetected";
export const EVENT_FLOOD_CLEARED = "FloodCleared";
// --- end flood detection ---
// --- rollout guard (issue 18) ---
/** True while a rollout's new pods churn over spec.rolloutGuard.maxChurnRatio × the old pods'. */
export const COND_ROLLOUT_CHURN = "RolloutChurn";
export const REASON_NO_ROLLOUT = "NoRollout";
export const REASON_COLLECTING_SAMPLE = "CollectingSample";
export const REASON_CHURN_WITHIN_RATIO = "ChurnWithinRatio";
export const REASON_CHURN_ABOVE_OLD = "ChurnAboveOld";
export const EVENT_ROLLOUT_CHURN = "RolloutChurn";
/** action pause: connmeter set spec.paused on the target Deployment (once per new revision). */
export const EVENT_ROLLOUT_PAUSED = "RolloutPaused";
export const EVENT_ROLLOUT_PAUSE_FAILED = "RolloutPauseFailed";
// --- end rollout guard ---
export const CONDITION_TYPES = [COND_READY, COND_METERED, COND_SCALING_ACTIVE, COND_SCALING_LIMITED, COND_AT_CAPACITY, COND_LIMITS_APPLIED, "Injected", COND_FLOOD_DETECTED, COND_ROLLOUT_CHURN] as const;

export const REASON_ALL_PODS_SCRAPED = "AllPodsScraped";
export const REASON_SCRAPE_FAILED = "ScrapeFailed";
export const REASON_NO_PODS = "NoPods";
export const REASON_PODS_NOT_STARTING = "PodsNotStarting";
export const REASON_TARGET_NOT_FOUND = "TargetNotFound";
export const REASON_INVALID_SELECTOR = "InvalidSelector";
export const REASON_OBSERVE_ONLY = "ObserveOnly";
export const REASON_VALID_METRIC = "ValidMetricFound";
export const REASON_HPA_CONFLICT = "HPAConflict";
export const REASON_POLICY_CONFLICT = "PolicyConflict";
export const REASON_FAILED_UPDATE_SCALE = "FailedUpdateScale";
export const REASON_SCALED_TO_ZERO = "ScalingDisabled";
export const REASON_TOO_MANY = "TooManyReplicas";
export const REASON_TOO_FEW = "TooFewReplicas";
export const REASON_SCALE_UP_LIMIT = "ScaleUpLimit";
export const REASON_SCALE_DOWN_LIMIT = "ScaleDownLimit";
export const REASON_WITHIN_RANGE = "DesiredWithinRange";
export const REASON_AT_CAPACITY = "AtCapacity";
export const REASON_BELOW_CAPACITY = "BelowCapacity";
export const REASON_NO_CAP = "NoClusterCap";
export const REASON_CONFIG_ACCEPTED = "ConfigAccepted";
export const REASON_CONFIG_PUSH_FAILED = "ConfigPushFailed";
export const REASON_METERED = "Metered";

// Event reasons (DESIGN.md).
export const EVENT_SCALED_UP = "ScaledUp";
export const EVENT_SCALED_DOWN = "ScaledDown";
export const EVENT_AT_CAPACITY = "AtCapacity";
export const EVENT_SCRAPE_FAILED = "ScrapeFailed";
export const EVENT_TARGET_NOT_FOUND = "TargetNotFound";
export const EVENT_FAILED_SCALE = "FailedScale";
export const EVENT_CONFIG_PUSH_FAILED = "ConfigPushFailed";
export const EVENT_STATUS_WRITE_FAILED = "StatusWriteFailed";
/** Cleanup of a deleted policy gave up (sidecars unreachable): its finalizer was removed anyway. */
export const EVENT_CLEANUP_INCOMPLETE = "CleanupIncomplete";
/** The operator could not add or remove its finalizer (e.g. RBAC lacks `patch` on connectionpolicies). */
export const EVENT_FINALIZER_FAILED = "FinalizerFailed";

// --- Injection (issue 16): the webhook's labels, the policy's injection settings, condition Injected. ---
/** Namespace label `enabled` injects every pod of the namespace; pod label `disabled` opts a pod out. */
export const INJECT_LABEL = "connmeter.io/inject";
/** Pod label (or annotation) `redirect`: take the app's port over with iptables (needs NET_ADMIN) instead of a port rename. */
export const INJECT_MODE_LABEL = "connmeter.io/inject-mode";
/** Pod annotation: the name of the app's port to take over (default: the policy's `spec.injection.port`, else `http`). */
export const INJECT_PORT_ANNOTATION = "connmeter.io/inject-port";
/** Set by the webhook on every pod it injected: what it did, for people and for idempotency. */
export const INJECTED_ANNOTATION = "connmeter.io/injected";
/** The operator's label on namespaces that hold a ConnectionPolicy (value `true`): the webhook's namespaceSelector. */
export const POLICY_NAMESPACE_LABEL = "connmeter.io/has-policy";
/** The injected sidecar's container name (also the chart snippet's). */
export const SIDECAR_CONTAINER = "connmeter";
/** The sidecar's admin port name (the snippet's, the PodMonitor's). */
export const SIDECAR_ADMIN_PORT_NAME = "connmeter-admin";

export type InjectionMode = "named-port" | "redirect";

/** spec.injection: how the webhook injects the target's pods (all optional; the chart's settings fill the rest). */
export interface InjectionSpec {
  /** Inject the target's pods (default true). */
  enabled?: boolean;
  /** The app container's port to take over, by name (default `http`). */
  port?: string;
  /** `named-port` (default, no privileges) or `redirect` (iptables, NET_ADMIN). */
  mode?: InjectionMode;
  /** The sidecar's resources; requests and limits are always set (the chart's defaults fill gaps). */
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

export const COND_INJECTED = "Injected";
export const REASON_ALL_PODS_INJECTED = "AllPodsInjected";
export const REASON_PODS_WITHOUT_SIDECAR = "PodsWithoutSidecar";
export const REASON_INJECTION_DISABLED = "InjectionDisabled";
export const EVENT_PODS_WITHOUT_SIDECAR = "PodsWithoutSidecar";
// --- end injection ---

/** The spec with every default of the CRD filled in. */
export function withDefaults(spec: ConnectionPolicy["spec"]): PolicySpec {
  const s: Partial<ScalingSpec> | undefined = spec.scaling;
  const f = spec.floodProtection;
  const g = spec.rolloutGuard;
  return {
    targetRef: { ...spec.targetRef, apiVersion: spec.targetRef.apiVersion ?? "apps/v1" },
    sidecar: { adminPort: spec.sidecar?.adminPort ?? 9090 },
    scrapeIntervalSeconds: spec.scrapeIntervalSeconds ?? 5,
    topics: spec.topics ?? [],
    limits: spec.limits ?? {},
    ...(spec.occupancy === undefined ? {} : { occupancy: occupancyWithDefaults(spec.occupancy, spec.scrapeIntervalSeconds ?? 5) }),
    scaling: s?.maxReplicas === undefined || s.targetConnectionsPerPod === undefined
      ? undefined
      : {
          minReplicas: s.minReplicas ?? 1,
          maxReplicas: s.maxReplicas,
          targetConnectionsPerPod: s.targetConnectionsPerPod,
          scaleUpStabilizationSeconds: s.scaleUpStabilizationSeconds ?? 0,
          scaleDownStabilizationSeconds: s.scaleDownStabilizationSeconds ?? 300,
          scaleUpPolicies: s.scaleUpPolicies ?? [...DEFAULT_SCALE_UP_POLICIES],
          scaleUpSelectPolicy: s.scaleUpSelectPolicy ?? "Max",
          scaleDownPolicies: s.scaleDownPolicies ?? [...DEFAULT_SCALE_DOWN_POLICIES],
          scaleDownSelectPolicy: s.scaleDownSelectPolicy ?? "Max",
          connectionAwareScaleDown: s.connectionAwareScaleDown ?? true,
        },
    floodProtection: f === undefined ? undefined : {
      spikeFactor: f.spikeFactor ?? 10,
      minRatePerSecond: f.minRatePerSecond ?? 20,
      cooldownSeconds: f.cooldownSeconds ?? 300,
      action: f.action ?? "none",
    },
    rolloutGuard: g === undefined ? undefined : {
      maxChurnRatio: g.maxChurnRatio ?? 2,
      minConnectionMinutes: g.minConnectionMinutes ?? 60,
      minJoins: g.minJoins ?? 100,
      action: g.action ?? "none",
    },
  };
}

/** `namespace/name`, the work queue's key. */
export function policyKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
