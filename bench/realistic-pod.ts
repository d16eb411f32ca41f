// A pod as the API server serves it after the kubelet has run it for a while: two containers
// with env, probes, resources and mounts, the projected service-account volume, tolerations,
// five conditions, container statuses, and the managedFields of kube-controller-manager and
// the kubelet. About 15 KiB of JSON; every pod gets its own name, uid, IPs and timestamps, so
// no string is shared between pods by accident.

const hex = (i: number, width: number) => i.toString(16).padStart(width, "0").slice(-width);

function env(i: number): Array<{ name: string; value?: string; valueFrom?: unknown }> {
  const out: Array<{ name: string; value?: string; valueFrom?: unknown }> = [
    { name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } } },
    { name: "POD_IP", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "status.podIP" } } },
  ];
  for (let k = 0; k < 20; k++) out.push({ name: `APP_SETTING_${k}`, value: `value-${k}-${hex(i * 31 + k, 8)}` });
  return out;
}

function container(name: string, image: string, i: number) {
  return {
    name, image, imagePullPolicy: "IfNotPresent",
    args: ["--port=8080", "--log-level=info", "--metrics-addr=:9102"],
    env: env(i),
    ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }, { name: "metrics", containerPort: 9102, protocol: "TCP" }],
    resources: { limits: { cpu: "500m", memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
    livenessProbe: { httpGet: { path: "/healthz", port: 8080, scheme: "HTTP" }, initialDelaySeconds: 5, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: "/readyz", port: 8080, scheme: "HTTP" }, timeoutSeconds: 1, periodSeconds: 5, successThreshold: 1, failureThreshold: 3 },
    volumeMounts: [
      { name: "config", mountPath: "/etc/app", readOnly: true },
      { name: `kube-api-access-${hex(i, 5)}`, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true },
    ],
    terminationMessagePath: "/dev/termination-log", terminationMessagePolicy: "File",
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } },
  };
}

/** fieldsV1 of one container as kube-controller-manager's managedFields entry lists it. */
function containerFields(i: number) {
  const fields: Record<string, unknown> = { ".": {}, "f:args": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": { ".": {}, "f:limits": { ".": {}, "f:cpu": {}, "f:memory": {} }, "f:requests": { ".": {}, "f:cpu": {}, "f:memory": {} } } };
  const envFields: Record<string, unknown> = { ".": {} };
  for (const e of env(i)) envFields[`k:{"name":"${e.name}"}`] = { ".": {}, "f:name": {}, [e.value === undefined ? "f:valueFrom" : "f:value"]: {} };
  fields["f:env"] = envFields;
  fields["f:ports"] = { ".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': { ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {} }, 'k:{"containerPort":9102,"protocol":"TCP"}': { ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {} } };
  fields["f:livenessProbe"] = { ".": {}, "f:failureThreshold": {}, "f:httpGet": { ".": {}, "f:path": {}, "f:port": {}, "f:scheme": {} }, "f:initialDelaySeconds": {}, "f:periodSeconds": {}, "f:successThreshold": {}, "f:timeoutSeconds": {} };
  fields["f:readinessProbe"] = { ".": {}, "f:failureThreshold": {}, "f:httpGet": { ".": {}, "f:path": {}, "f:port": {}, "f:scheme": {} }, "f:periodSeconds": {}, "f:successThreshold": {}, "f:timeoutSeconds": {} };
  fields["f:securityContext"] = { ".": {}, "f:allowPrivilegeEscalation": {}, "f:capabilities": { ".": {}, "f:drop": {} }, "f:readOnlyRootFilesystem": {}, "f:runAsNonRoot": {} };
  fields["f:volumeMounts"] = { ".": {}, 'k:{"mountPath":"/etc/app"}': { ".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {} } };
  return fields;
}

function condition(type: string, status: string, at: string) {
  return { type, status, lastProbeTime: null, lastTransitionTime: at };
}

/**
 * Pod number `i` in namespace `namespace`, as JSON-ready data. `resourceVersion` lets a
 * benchmark send the same pod again as a MODIFIED event.
 */
export function realisticPod(i: number, namespace: string, resourceVersion: number) {
  const name = `web-${hex(i * 7919, 10)}-${hex(i, 5)}`;
  const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i % 3600)).toISOString().replace(".000", "");
  const ip = `198.18.${(i >> 8) & 255}.${i & 255}`;
  const node = `node-${i % 50}`;
  const containers = [container("app", `registry.example.com/team/web:1.${i % 7}.3`, i), container("log-shipper", "registry.example.com/infra/fluent-bit:3.1.4", i + 1)];
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: {
      name, generateName: `web-${hex(i * 7919, 10)}-`, namespace,
      uid: `${hex(i * 2654435761, 8)}-${hex(i, 4)}-4${hex(i * 3, 3)}-8${hex(i * 5, 3)}-${hex(i * 40503, 12)}`,
      resourceVersion: String(resourceVersion), creationTimestamp: at,
      labels: { app: "web", "pod-template-hash": hex(i * 7919, 10), team: "storefront", version: `1.${i % 7}.3` },
      annotations: { "checksum/config": hex(i * 97, 16).repeat(4), "prometheus.io/scrape": "true", "prometheus.io/port": "9102", "kubectl.kubernetes.io/restartedAt": at },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: `web-${hex(i * 7919, 10)}`, uid: `${hex(i, 8)}-0000-4000-8000-${hex(i, 12)}`, controller: true, blockOwnerDeletion: true }],
      managedFields: [
        {
          manager: "kube-controller-manager", operation: "Update", apiVersion: "v1", time: at, fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": { "f:annotations": { ".": {}, "f:checksum/config": {}, "f:kubectl.kubernetes.io/restartedAt": {}, "f:prometheus.io/port": {}, "f:prometheus.io/scrape": {} }, "f:generateName": {}, "f:labels": { ".": {}, "f:app": {}, "f:pod-template-hash": {}, "f:team": {}, "f:version": {} }, "f:ownerReferences": { ".": {}, [`k:{"uid":"${hex(i, 8)}-0000-4000-8000-${hex(i, 12)}"}`]: {} } },
            "f:spec": { 'f:containers': { 'k:{"name":"app"}': containerFields(i), 'k:{"name":"log-shipper"}': containerFields(i + 1) }, "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": { ".": {}, 'k:{"name":"config"}': { ".": {}, "f:configMap": { ".": {}, "f:defaultMode": {}, "f:name": {} }, "f:name": {} } } },
          },
        },
        {
          manager: "kubelet", operation: "Update", apiVersion: "v1", time: at, fieldsType: "FieldsV1", subresource: "status",
          fieldsV1: {
            "f:status": {
              "f:conditions": Object.fromEntries(["ContainersReady", "Initialized", "PodReadyToStartContainers", "Ready"].map((t) => [`k:{"type":"${t}"}`, { ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {} }])),
              "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": { ".": {}, [`k:{"ip":"${ip}"}`]: { ".": {}, "f:ip": {} } }, "f:startTime": {},
            },
          },
        },
      ],
    },
    spec: {
      containers, nodeName: node, serviceAccountName: "web", serviceAccount: "web",
      volumes: [
        { name: "config", configMap: { name: "web-config", defaultMode: 420 } },
        { name: `kube-api-access-${hex(i, 5)}`, projected: { defaultMode: 420, sources: [
          { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
          { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
        ] } },
      ],
      restartPolicy: "Always", terminationGracePeriodSeconds: 30, dnsPolicy: "ClusterFirst", schedulerName: "default-scheduler",
      securityContext: { fsGroup: 2000 }, enableServiceLinks: true, preemptionPolicy: "PreemptLowerPriority", priority: 0,
      tolerations: [
        { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
        { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
      ],
    },
    status: {
      phase: "Running", hostIP: `198.19.0.${i % 50}`, hostIPs: [{ ip: `198.19.0.${i % 50}` }], podIP: ip, podIPs: [{ ip }], startTime: at, qosClass: "Burstable",
      conditions: [condition("PodReadyToStartContainers", "True", at), condition("Initialized", "True", at), condition("Ready", "True", at), condition("ContainersReady", "True", at), condition("PodScheduled", "True", at)],
      containerStatuses: containers.map((c, k) => ({
        name: c.name, state: { running: { startedAt: at } }, lastState: {}, ready: true, restartCount: 0, image: c.image,
        imageID: `${c.image.split(":")[0]}@sha256:${hex(i * 131 + k, 16).repeat(4)}`, containerID: `containerd://${hex(i * 977 + k, 16).repeat(4)}`, started: true,
        volumeMounts: [{ name: `kube-api-access-${hex(i, 5)}`, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true, recursiveReadOnly: "Disabled" }],
      })),
    },
  };
}
