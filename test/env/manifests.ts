// The manifest the e2e tests deploy most: the Phoenix demo app with the connmeter sidecar in
// front of it, as a user deploys it (app on 0.0.0.0:4000; the sidecar's defaults: clients on
// :4001, admin on :9090, the app at 127.0.0.1:4000), the same on both clusters (images map to
// local processes in a network namespace per pod, or are loaded into kind).

export interface MeteredAppOptions {
  name: string;
  replicas: number;
  /** Extra sidecar flags, e.g. ["--max-connections", "100"]. */
  sidecarArgs?: string[];
  /** Extra sidecar env vars (CONNMETER_ADMIN_TOKEN, ...). */
  sidecarEnv?: Record<string, string>;
  /** readinessProbe thresholds on /readyz (period 1 s). */
  failureThreshold?: number;
  successThreshold?: number;
  /** Spread the pods one per node (maxSkew 1 over kubernetes.io/hostname). */
  spreadAcrossNodes?: boolean;
  terminationGracePeriodSeconds?: number;
  /** Env vars of the app container: changing one makes a new revision (a rollout). */
  appEnv?: Record<string, string>;
  /** spec.minReadySeconds: a new pod counts as available only after this long, so a rollout holds both revisions meanwhile. */
  minReadySeconds?: number;
}

function envList(env: Record<string, string> | undefined): string {
  return Object.entries(env ?? {}).map(([k, v]) => `\n            - {name: ${k}, value: ${JSON.stringify(v)}}`).join("");
}

/** A Deployment of the demo app with the sidecar, labelled `app: <name>`. */
export function meteredAppDeployment(o: MeteredAppOptions): string {
  const env = envList(o.sidecarEnv);
  const appEnv = envList(o.appEnv);
  const args = o.sidecarArgs?.length ? `\n          args: ${JSON.stringify(o.sidecarArgs)}` : "";
  const spread = o.spreadAcrossNodes
    ? `
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: ${o.name}}}}`
    : "";
  return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: ${o.name}}
spec:
  replicas: ${o.replicas}${o.minReadySeconds ? `\n  minReadySeconds: ${o.minReadySeconds}` : ""}
  selector: {matchLabels: {app: ${o.name}}}
  template:
    metadata: {labels: {app: ${o.name}}}
    spec:
      terminationGracePeriodSeconds: ${o.terminationGracePeriodSeconds ?? 5}${spread}
      containers:
        - name: app
          image: connmeter/demo-app:dev
          args: ["--listen", "0.0.0.0:4000"]${appEnv ? `
          env:${appEnv}` : ""}
          ports: [{name: http, containerPort: 4000}]
        - name: sidecar
          image: connmeter/sidecar:dev${args}${env ? `
          env:${env}` : ""}
          ports: [{name: ws, containerPort: 4001}, {name: admin, containerPort: 9090}]
          readinessProbe:
            httpGet: {path: /readyz, port: 9090}
            periodSeconds: 1
            failureThreshold: ${o.failureThreshold ?? 2}${o.successThreshold ? `\n            successThreshold: ${o.successThreshold}` : ""}
`;
}

export interface PolicyOptions {
  name: string;
  /** The Deployment it meters (default: `name`, as meteredAppDeployment names it). */
  target?: string;
  scrapeIntervalSeconds?: number;
  /** The rest of spec as the CRD spells it: occupancy, floodProtection, rolloutGuard, limits, ... */
  spec?: Record<string, unknown>;
}

/** A ConnectionPolicy on a Deployment of {@link meteredAppDeployment} (JSON, which is YAML). */
export function connectionPolicy(o: PolicyOptions): string {
  return JSON.stringify({
    apiVersion: "connmeter.io/v1alpha1",
    kind: "ConnectionPolicy",
    metadata: { name: o.name },
    spec: {
      targetRef: { kind: "Deployment", name: o.target ?? o.name },
      ...(o.scrapeIntervalSeconds === undefined ? {} : { scrapeIntervalSeconds: o.scrapeIntervalSeconds }),
      ...o.spec,
    },
  }, null, 2);
}
