// The Helm chart without a cluster: lint, the rendered objects (security settings, probes, env,
// least-privilege RBAC verb by verb), values.schema.json refusing bad values, the token Secret,
// the optional Prometheus Operator and Grafana objects, and crds/ kept the one source.
import type { KubernetesObject } from "../env/helm.js";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findRepoRoot } from "../env/config.js";
import { CHART_DIR, findHelm, helm, helmTemplate, parseYamlDocs, skipWithoutTool } from "../env/helm.js";

const root = findRepoRoot();
const skip = skipWithoutTool("chart tests (test/chart/chart.test.ts)", findHelm());

type Obj = KubernetesObject & Record<string, unknown>;
const find = (objs: KubernetesObject[], kind: string, name?: string) =>
  objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name)) as Obj[];
const one = (objs: KubernetesObject[], kind: string, name?: string): Obj => {
  const found = find(objs, kind, name);
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0]!;
};

interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
/** Rules flattened to "group/resource verb" (plus ":name" when limited by name), sorted. */
const permissions = (rules: Rule[]) =>
  rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g || "core"}/${res} ${v}${r.resourceNames ? `:${r.resourceNames.join(",")}` : ""}`)))).sort();

// What operator/k8s/*.ts calls, and nothing else (see the comment in templates/rbac.yaml).
const OPERATOR_PERMISSIONS = [
  "apps/deployments get", "apps/deployments list", "apps/deployments patch", "apps/deployments watch", "apps/deployments/scale get", "apps/deployments/scale patch",
  "apps/statefulsets list", "apps/statefulsets watch", "apps/statefulsets/scale get", "apps/statefulsets/scale patch",
  "autoscaling/horizontalpodautoscalers list", "autoscaling/horizontalpodautoscalers watch",
  "connmeter.io/connectionpolicies list", "connmeter.io/connectionpolicies patch", "connmeter.io/connectionpolicies watch", "connmeter.io/connectionpolicies/status patch",
  "core/pods list", "core/pods patch", "core/pods watch", "core/secrets get:connmeter-admin-token",
  "events.k8s.io/events create", "events.k8s.io/events patch",
].sort();
const LEASE_PERMISSIONS = ["coordination.k8s.io/leases create", "coordination.k8s.io/leases get:connmeter-operator", "coordination.k8s.io/leases update:connmeter-operator"];

describe.skipIf(skip)("the connmeter chart", () => {
  it("passes helm lint --strict with the defaults and with every optional object on", () => {
    expect(helm(["lint", "--strict", CHART_DIR])).toMatch(/0 chart\(s\) failed/);
    expect(helm(["lint", "--strict", CHART_DIR, "--set", "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,operator.watchNamespace=apps"])).toMatch(/0 chart\(s\) failed/);
  });

  it("keeps crds/ the one source: the chart's crds/ is a byte-for-byte copy (`make chart-crds`)", () => {
    const src = readdirSync(join(root, "crds")).filter((f) => f.endsWith(".yaml")).sort();
    expect(readdirSync(join(CHART_DIR, "crds")).sort()).toEqual(src);
    for (const f of src) expect(readFileSync(join(CHART_DIR, "crds", f), "utf8"), `charts/connmeter/crds/${f} differs from crds/${f}: run make chart-crds`).toBe(readFileSync(join(root, "crds", f), "utf8"));
  });

  it("ships a pre-delete Job that releases the operator's finalizer and deletion costs, as the operator's ServiceAccount, hardened like it", () => {
    const job = helmTemplate().find((o) => o.kind === "Job") as unknown as {
      metadata: { annotations: Record<string, string> };
      spec: { template: { spec: { serviceAccountName: string; restartPolicy: string; containers: { args: string[]; securityContext: Record<string, unknown> }[] } } };
    };
    expect(job.metadata.annotations["helm.sh/hook"]).toBe("pre-delete");
    const pod = job.spec.template.spec;
    expect(pod).toMatchObject({ serviceAccountName: "connmeter", restartPolicy: "Never" });
    expect(pod.containers[0]!.args).toEqual(["--cleanup", "--leader-elect=true", "--leader-election-id=connmeter-operator"]);
    expect(pod.containers[0]!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(helmTemplate({ "operator.watchNamespace": "chat" }).find((o) => o.kind === "Job")).toMatchObject({
      spec: { template: { spec: { containers: [{ args: ["--cleanup", "--leader-elect=true", "--leader-election-id=connmeter-operator", "--namespace=chat"] }] } } },
    });
    expect(helmTemplate({ cleanupOnUninstall: false }).some((o) => o.kind === "Job")).toBe(false);
  });

  it("renders the operator hardened: 2 replicas, leader election, downward-API identity, the token from the Secret, probes, non-root, read-only, seccomp", () => {
    const objs = helmTemplate();
    expect(objs.map((o) => `${o.kind}/${o.metadata?.name}`).sort()).toEqual([
      "ClusterRole/connmeter-injector", "ClusterRole/connmeter-operator", "ClusterRoleBinding/connmeter-injector", "ClusterRoleBinding/connmeter-operator",
      "Deployment/connmeter-operator", "Job/connmeter-cleanup", "Lease/connmeter-operator", "MutatingWebhookConfiguration/connmeter-injector",
      "PodDisruptionBudget/connmeter-operator", "Role/connmeter-leader-election", "Role/connmeter-webhook-tls", "RoleBinding/connmeter-leader-election",
      "RoleBinding/connmeter-webhook-tls", "Secret/connmeter-admin-token", "Secret/connmeter-webhook-tls",
      "Service/connmeter-operator-metrics", "Service/connmeter-webhook", "ServiceAccount/connmeter",
      "ValidatingAdmissionPolicy/connmeter-deployment-pause", "ValidatingAdmissionPolicy/connmeter-namespace-label", "ValidatingAdmissionPolicy/connmeter-pod-patch",
      "ValidatingAdmissionPolicyBinding/connmeter-deployment-pause", "ValidatingAdmissionPolicyBinding/connmeter-namespace-label", "ValidatingAdmissionPolicyBinding/connmeter-pod-patch",
    ]);
    const dep = one(objs, "Deployment") as unknown as { spec: { replicas: number; template: { spec: PodSpec } } };
    interface PodSpec { serviceAccountName: string; securityContext: Record<string, unknown>; containers: Container[] }
    interface Container { image: string; args: string[]; env: { name: string; valueFrom?: Record<string, Record<string, string>> }[]; ports: { name: string; containerPort: number }[]; securityContext: Record<string, unknown>; resources: Record<string, unknown>; livenessProbe: { httpGet: { path: string; port: string } }; readinessProbe: { httpGet: { path: string; port: string } } }
    expect(dep.spec.replicas).toBe(2);
    const pod = dep.spec.template.spec;
    expect(pod.serviceAccountName).toBe("connmeter");
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    const c = pod.containers[0]!;
    expect(c.image).toBe("connmeter/operator:0.1.0");
    expect(c.args).toEqual(expect.arrayContaining(["--leader-elect=true", "--metrics-addr=0.0.0.0:8080", "--health-addr=0.0.0.0:8081"]));
    expect(c.args.some((a) => a.startsWith("--namespace"))).toBe(false);
    const env = Object.fromEntries(c.env.map((e) => [e.name, e.valueFrom]));
    expect(env.POD_NAME).toEqual({ fieldRef: { fieldPath: "metadata.name" } });
    expect(env.POD_NAMESPACE).toEqual({ fieldRef: { fieldPath: "metadata.namespace" } });
    expect(env.CONNMETER_ADMIN_TOKEN).toEqual({ secretKeyRef: { name: "connmeter-admin-token", key: "token" } });
    expect(c.ports).toEqual([{ name: "metrics", containerPort: 8080, protocol: "TCP" }, { name: "health", containerPort: 8081, protocol: "TCP" }, { name: "webhook", containerPort: 9443, protocol: "TCP" }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health" });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(c.resources).toMatchObject({ requests: { cpu: expect.any(String), memory: expect.any(String) }, limits: { memory: expect.any(String) } });
    expect(one(objs, "PodDisruptionBudget").spec).toMatchObject({ minAvailable: 1 });
    expect(one(objs, "Service", "connmeter-operator-metrics").spec).toMatchObject({ ports: [{ name: "metrics", port: 8080, targetPort: "metrics" }] });
    const onPodIP = one(helmTemplate({ "operator.listenOnPodIP": true }), "Deployment") as unknown as { spec: { template: { spec: PodSpec } } };
    expect(onPodIP.spec.template.spec.containers[0]!.args).toEqual(expect.arrayContaining(["--metrics-addr=$(POD_IP):8080", "--health-addr=$(POD_IP):8081"]));
  });

  it("grants exactly the verbs the operator's code uses: cluster-wide by default, a Role in operator.watchNamespace, the Lease by name", () => {
    const objs = helmTemplate();
    expect(permissions(one(objs, "ClusterRole", "connmeter-operator").rules as Rule[])).toEqual(OPERATOR_PERMISSIONS);
    expect(permissions(one(objs, "Role", "connmeter-leader-election").rules as Rule[])).toEqual(LEASE_PERMISSIONS);
    expect(one(objs, "ClusterRoleBinding", "connmeter-operator").subjects).toEqual([{ kind: "ServiceAccount", name: "connmeter", namespace: "connmeter" }]);

    const scoped = helmTemplate({ "operator.watchNamespace": "apps", "injection.enabled": false });
    expect(find(scoped, "ClusterRole")).toEqual([]);
    const role = one(scoped, "Role", "connmeter-operator");
    expect(role.metadata?.namespace).toBe("apps");
    expect(permissions(role.rules as Rule[])).toEqual(OPERATOR_PERMISSIONS);
    expect(one(scoped, "RoleBinding", "connmeter-operator")).toMatchObject({ metadata: { namespace: "apps" }, roleRef: { kind: "Role", name: "connmeter-operator" } });
    expect((one(scoped, "Deployment").spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args).toContain("--namespace=apps");

    const single = helmTemplate({ "operator.leaderElect": false, "operator.replicas": 1, "injection.enabled": false });
    expect(find(single, "Lease")).toEqual([]);
    expect(find(single, "Role")).toEqual([]);
    expect(find(single, "PodDisruptionBudget")).toEqual([]);
  });

  it("refuses values that break values.schema.json, naming the value", () => {
    for (const [set, what] of [["operator.replicas=0", "replicas"], ["operator.bogus=1", "bogus"], ["image.pullPolicy=Sometimes", "pullPolicy"], ["operator.watchNamespace=Not_A_Namespace", "watchNamespace"], ["serviceMonitor.interval=soon", "interval"]] as const) {
      expect(() => helm(["template", "x", CHART_DIR, "--set", set])).toThrow(new RegExp(what));
    }
  });

  it("gives each namespace of adminToken.namespaces and adminToken.extraNamespaces its own token Secret, kept on uninstall; an existingSecret replaces only the operator's own", () => {
    type Secret = { metadata: { namespace: string; name: string; annotations?: Record<string, string> }; data: { token: string } };
    const objs = helmTemplate({ "adminToken.namespaces": "{apps,web}", "adminToken.extraNamespaces": "{web,legacy,connmeter}" });
    const secrets = find(objs, "Secret").filter((o) => o.metadata?.name !== "connmeter-webhook-tls") as unknown as Secret[];
    // The release namespace's own Secret already bears the name connmeter-admin-token: no second one there.
    expect(secrets.map((s) => `${s.metadata.namespace}/${s.metadata.name}`)).toEqual([
      "connmeter/connmeter-admin-token", "apps/connmeter-admin-token", "web/connmeter-admin-token", "legacy/connmeter-admin-token",
    ]);
    const tokens = secrets.map((s) => Buffer.from(s.data.token, "base64").toString());
    for (const t of tokens) expect(t).toMatch(/^[A-Za-z0-9]{48}$/);
    expect(new Set(tokens).size).toBe(4); // a token of one namespace opens no other's sidecars
    expect(secrets[0]!.metadata.annotations?.["helm.sh/resource-policy"]).toBeUndefined();
    for (const s of secrets.slice(1)) expect(s.metadata.annotations).toEqual({ "helm.sh/resource-policy": "keep" });
    expect(Buffer.from((find(helmTemplate(), "Secret", "connmeter-admin-token")[0] as unknown as Secret).data.token, "base64").toString()).not.toBe(tokens[0]);

    const existing = helmTemplate({ "adminToken.existingSecret": "my-token", "adminToken.secretKey": "t", "adminToken.namespaces": "{apps}" });
    expect(find(existing, "Secret").filter((o) => o.metadata?.name !== "connmeter-webhook-tls").map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`)).toEqual(["apps/connmeter-admin-token"]);
    const env = (one(existing, "Deployment").spec as { template: { spec: { containers: { env: { name: string; valueFrom?: unknown }[] }[] } } }).template.spec.containers[0]!.env;
    expect(env.find((e) => e.name === "CONNMETER_ADMIN_TOKEN")?.valueFrom).toEqual({ secretKeyRef: { name: "my-token", key: "t" } });
  });

  it("ships a ValidatingAdmissionPolicy that lets only the operator's ServiceAccount change only the deletion-cost annotations of pods (on by default)", () => {
    const objs = helmTemplate();
    const policy = one(objs, "ValidatingAdmissionPolicy", "connmeter-pod-patch") as unknown as { apiVersion: string; spec: Record<string, unknown> & { validations: { expression: string }[]; variables: { name: string; expression: string }[] } };
    expect(policy.apiVersion).toBe("admissionregistration.k8s.io/v1");
    expect(policy.spec).toMatchObject({
      failurePolicy: "Fail",
      matchConstraints: { resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["pods"] }] },
      matchConditions: [{ name: "connmeter-operator", expression: 'request.userInfo.username == "system:serviceaccount:connmeter:connmeter"' }],
    });
    expect(policy.spec.variables.find((v) => v.name === "allowed")?.expression).toBe("['controller.kubernetes.io/pod-deletion-cost', 'connmeter.io/pod-deletion-cost-by']");
    const cel = policy.spec.validations.map((v) => v.expression).join("\n");
    expect(cel).toContain("object.spec == oldObject.spec");
    expect(cel).toMatch(/variables\.newAnnotations\.all\(k, k in variables\.allowed \|\| \(k in variables\.oldAnnotations && variables\.oldAnnotations\[k\] == variables\.newAnnotations\[k\]\)\)/);
    expect(cel).toMatch(/variables\.oldAnnotations\.all\(k, k in variables\.allowed \|\| k in variables\.newAnnotations\)/);
    expect(one(objs, "ValidatingAdmissionPolicyBinding", "connmeter-pod-patch").spec).toEqual({ policyName: "connmeter-pod-patch", validationActions: ["Deny"] });
    const off = helmTemplate({ "podPatchPolicy.enabled": false });
    expect(find(off, "ValidatingAdmissionPolicy")).toEqual([]);
    expect(find(off, "ValidatingAdmissionPolicyBinding")).toEqual([]);
  });

  it("ships a ValidatingAdmissionPolicy that lets the operator's ServiceAccount only set spec.paused: true on Deployments (rollout guard; on by default)", () => {
    const objs = helmTemplate();
    const policy = one(objs, "ValidatingAdmissionPolicy", "connmeter-deployment-pause") as unknown as { spec: Record<string, unknown> & { validations: { expression: string }[] } };
    expect(policy.spec).toMatchObject({
      failurePolicy: "Fail",
      matchConstraints: { resourceRules: [{ apiGroups: ["apps"], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["deployments"] }] },
      matchConditions: [{ name: "connmeter-operator", expression: 'request.userInfo.username == "system:serviceaccount:connmeter:connmeter"' }],
    });
    const cel = policy.spec.validations.map((v) => v.expression).join("\n");
    // every apps/v1 DeploymentSpec field but paused is compared, and paused may only become true
    for (const field of ["selector", "template", "replicas", "strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"]) expect(cel).toContain(`object.spec.${field}`);
    expect(cel).toContain("has(object.spec.paused) && object.spec.paused");
    expect(cel).toContain("object.metadata.annotations");
    expect(one(objs, "ValidatingAdmissionPolicyBinding", "connmeter-deployment-pause").spec).toEqual({ policyName: "connmeter-deployment-pause", validationActions: ["Deny"] });
  });

  it("renders the admin-port NetworkPolicy only when asked: in each app namespace, port 9090 from the operator's pods and the monitoring namespace, every other port open", () => {
    expect(find(helmTemplate({ "adminToken.namespaces": "{apps}" }), "NetworkPolicy")).toEqual([]);
    const objs = helmTemplate({ "networkPolicy.enabled": true, "adminToken.namespaces": "{apps,web}", "networkPolicy.monitoringNamespace": "prom" });
    const policies = find(objs, "NetworkPolicy");
    expect(policies.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)).toEqual(["apps/connmeter-sidecar-admin", "web/connmeter-sidecar-admin"]);
    // client-node's YAML loader types the objects: NetworkPolicyIngressRule's `from` is its `_from`.
    const plain = (o: unknown): unknown => JSON.parse(JSON.stringify(o).replaceAll('"_from":', '"from":'));
    expect(plain(policies[0]!.spec)).toEqual({
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [
        { ports: [{ protocol: "TCP", port: 1, endPort: 9089 }, { protocol: "TCP", port: 9091, endPort: 65535 }, { protocol: "UDP", port: 1, endPort: 65535 }] },
        {
          from: [
            {
              namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "connmeter" } },
              podSelector: { matchLabels: { "app.kubernetes.io/name": "connmeter", "app.kubernetes.io/instance": "connmeter", "app.kubernetes.io/component": "operator" } },
            },
            { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "prom" } } },
          ],
          ports: [{ protocol: "TCP", port: 9090 }],
        },
      ],
    });
    const own = find(helmTemplate({ "networkPolicy.enabled": true, "networkPolicy.namespaces": "{chat}", "networkPolicy.adminPort": 9100, "networkPolicy.monitoringNamespace": "" }), "NetworkPolicy");
    expect(own.map((p) => p.metadata?.namespace)).toEqual(["chat"]);
    const ingress = (plain(own[0]!.spec) as { ingress: { from?: unknown[]; ports: unknown[] }[] }).ingress;
    expect(ingress[1]!.from).toHaveLength(1);
    expect(ingress[1]!.ports).toEqual([{ protocol: "TCP", port: 9100 }]);
    expect(ingress[0]!.ports).toEqual([{ protocol: "TCP", port: 1, endPort: 9099 }, { protocol: "TCP", port: 9101, endPort: 65535 }, { protocol: "UDP", port: 1, endPort: 65535 }]);
  });

  it("sets --await-budget-seconds in the sidecar snippet of the README and the example app", () => {
    for (const f of [join(CHART_DIR, "README.md"), join(CHART_DIR, "examples/demo-app.yaml")]) {
      expect(readFileSync(f, "utf8"), f).toMatch(/name: CONNMETER_AWAIT_BUDGET_SECONDS, value: "\d+"/);
    }
  });

  it("renders the optional Prometheus Operator objects and the Grafana dashboard only when asked, from the files that are tested", () => {
    expect(helmTemplate().filter((o) => o.apiVersion === "monitoring.coreos.com/v1" || o.kind === "ConfigMap")).toEqual([]);
    const objs = helmTemplate({ "serviceMonitor.enabled": true, "podMonitor.enabled": true, "prometheusRule.enabled": true, "grafanaDashboard.enabled": true, "prometheusRule.labels.release": "kps" });
    expect(one(objs, "ServiceMonitor").spec).toMatchObject({ endpoints: [{ port: "metrics", honorLabels: true, relabelings: [{ targetLabel: "job", replacement: "connmeter-operator" }] }] });
    expect(one(objs, "PodMonitor").spec).toMatchObject({ namespaceSelector: { any: true }, podMetricsEndpoints: [{ port: "connmeter-admin", relabelings: [{ targetLabel: "job", replacement: "connmeter-sidecar" }, { targetLabel: "node" }] }] });
    const rule = one(objs, "PrometheusRule");
    expect(rule.metadata?.labels).toMatchObject({ release: "kps" });
    expect(rule.spec).toEqual(parseYamlDocs(readFileSync(join(CHART_DIR, "files/alerts.yaml"), "utf8"))[0]);
    const cm = one(objs, "ConfigMap") as unknown as { metadata: { labels: Record<string, string> }; data: Record<string, string> };
    expect(cm.metadata.labels.grafana_dashboard).toBe("1");
    expect(JSON.parse(cm.data["connmeter.json"]!)).toEqual(JSON.parse(readFileSync(join(CHART_DIR, "dashboards/connmeter.json"), "utf8")));
  });

  // --- injection (issue 16) ---
  it("ships the injector: two webhooks (policy namespaces, labelled namespaces) on pod CREATE only, side-effect free, bounded, never the release or kube-* namespaces", () => {
    interface Webhook { name: string; sideEffects: string; timeoutSeconds: number; failurePolicy: string; reinvocationPolicy: string; admissionReviewVersions: string[];
      clientConfig: { service: { name: string; namespace: string; path: string; port: number }; caBundle?: string }; rules: unknown[];
      namespaceSelector: { matchExpressions: { key: string; operator: string; values: string[] }[] }; objectSelector: unknown }
    const objs = helmTemplate();
    const config = one(objs, "MutatingWebhookConfiguration", "connmeter-injector") as unknown as { webhooks: Webhook[]; metadata: { annotations?: Record<string, string> } };
    expect(config.webhooks.map((w) => [w.name, w.clientConfig.service.path])).toEqual([["policy.inject.connmeter.io", "/inject/policy"], ["namespace.inject.connmeter.io", "/inject/namespace"]]);
    for (const w of config.webhooks) {
      expect(w).toMatchObject({ sideEffects: "None", timeoutSeconds: 5, failurePolicy: "Ignore", reinvocationPolicy: "IfNeeded", admissionReviewVersions: ["v1"] });
      expect(w.clientConfig.service).toEqual({ name: "connmeter-webhook", namespace: "connmeter", path: w.clientConfig.service.path, port: 443 });
      expect(w.clientConfig.caBundle).toBeUndefined(); // the operator's leader sets it
      expect(w.rules).toEqual([{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"], scope: "Namespaced" }]);
      expect(w.namespaceSelector.matchExpressions).toContainEqual({ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["connmeter", "kube-system", "kube-public", "kube-node-lease"] });
      expect(w.objectSelector).toEqual({ matchExpressions: [{ key: "connmeter.io/inject", operator: "NotIn", values: ["disabled"] }] });
    }
    expect(config.webhooks[0]!.namespaceSelector.matchExpressions).toContainEqual({ key: "connmeter.io/has-policy", operator: "In", values: ["true"] });
    expect(config.webhooks[1]!.namespaceSelector.matchExpressions).toContainEqual({ key: "connmeter.io/inject", operator: "In", values: ["enabled"] });
    expect(one(objs, "Service", "connmeter-webhook").spec).toMatchObject({ ports: [{ name: "webhook", port: 443, targetPort: "webhook" }] });
    const args = (one(objs, "Deployment").spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    expect(args).toEqual(expect.arrayContaining(["--webhook-addr=0.0.0.0:9443", "--webhook-tls-secret=connmeter-webhook-tls", "--webhook-manage-certificate=true",
      "--webhook-configuration=connmeter-injector", "--webhook-service=connmeter-webhook", "--sidecar-image=connmeter/sidecar:0.1.0",
      '--sidecar-resources={"limits":{"memory":"256Mi"},"requests":{"cpu":"50m","memory":"64Mi"}}']));

    const ha = one(helmTemplate({ "injection.failurePolicy": "Fail", "injection.timeoutSeconds": 3 }), "MutatingWebhookConfiguration") as unknown as { webhooks: Webhook[] };
    expect(ha.webhooks.map((w) => [w.failurePolicy, w.timeoutSeconds])).toEqual([["Fail", 3], ["Fail", 3]]);
    for (const [set, what] of [["injection.timeoutSeconds=10", "timeoutSeconds"], ["injection.failurePolicy=Maybe", "failurePolicy"], ["injection.sidecar.portName=Not-Valid", "portName"]] as const) {
      expect(() => helm(["template", "x", CHART_DIR, "--set", set])).toThrow(new RegExp(what));
    }
    // Redirect mode: offered by default with the chart's own init image (iptables), at the chart's version unless a tag is set; off = no image, refused.
    expect(args).toEqual(expect.arrayContaining(["--sidecar-redirect-init-image=connmeter/init:0.1.0", "--sidecar-probe-port=4002"]));
    const argsOf = (o: ReturnType<typeof helmTemplate>) => (one(o, "Deployment").spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    expect(argsOf(helmTemplate({ "injection.redirect.image.repository": "r.example/init", "injection.redirect.image.tag": "dev" }))).toContain("--sidecar-redirect-init-image=r.example/init:dev");
    expect(argsOf(helmTemplate({ "injection.redirect.enabled": false })).filter((a) => a.startsWith("--sidecar-redirect-init-image"))).toEqual([]);
    expect(() => helm(["template", "x", CHART_DIR, "--set", "injection.redirect.initImage=x"])).toThrow(/initImage/);
    const off = helmTemplate({ "injection.enabled": false });
    expect(off.filter((o) => /injector|webhook|namespace-label/.test(o.metadata?.name ?? "")).map((o) => o.kind)).toEqual([]);
  });

  it("grants the injector only its label on namespaces, its own webhook configuration and its own TLS Secret, each by name where RBAC allows", () => {
    const objs = helmTemplate();
    expect(permissions(one(objs, "ClusterRole", "connmeter-injector").rules as Rule[])).toEqual([
      "admissionregistration.k8s.io/mutatingwebhookconfigurations get:connmeter-injector", "admissionregistration.k8s.io/mutatingwebhookconfigurations patch:connmeter-injector",
      "core/namespaces patch",
    ]);
    expect(permissions(one(objs, "Role", "connmeter-webhook-tls").rules as Rule[])).toEqual(["core/secrets get:connmeter-webhook-tls", "core/secrets patch:connmeter-webhook-tls"]);
    const policy = one(objs, "ValidatingAdmissionPolicy", "connmeter-namespace-label") as unknown as { spec: { matchConstraints: unknown; validations: { expression: string }[] } };
    expect(policy.spec.matchConstraints).toEqual({ resourceRules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["namespaces"] }] });
    expect(policy.spec.validations.map((v) => v.expression).join("\n")).toContain("k == variables.label ||");
    const scoped = helmTemplate({ "operator.watchNamespace": "apps" });
    expect(permissions(one(scoped, "ClusterRole", "connmeter-injector").rules as Rule[])).toContain("core/namespaces patch:apps");

    // cert-manager: a Certificate into the same Secret, its CA injected; the operator only reads the Secret and never patches the configuration.
    const cm = helmTemplate({ "injection.certManager.enabled": true });
    expect(one(cm, "MutatingWebhookConfiguration").metadata?.annotations).toEqual({ "cert-manager.io/inject-ca-from": "connmeter/connmeter-webhook" });
    expect(one(cm, "Certificate").spec).toMatchObject({ secretName: "connmeter-webhook-tls", dnsNames: ["connmeter-webhook.connmeter.svc", "connmeter-webhook.connmeter.svc.cluster.local"] });
    expect(find(cm, "Secret", "connmeter-webhook-tls")).toEqual([]);
    expect(permissions(one(cm, "ClusterRole", "connmeter-injector").rules as Rule[])).toEqual(["core/namespaces patch"]);
    expect(permissions(one(cm, "Role", "connmeter-webhook-tls").rules as Rule[])).toEqual(["core/secrets get:connmeter-webhook-tls"]);
    const cmArgs = (one(cm, "Deployment").spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    expect(cmArgs).toContain("--webhook-manage-certificate=false");
  });
  // --- end injection ---
  // --- usage (issue 18) ---
  it("puts usage.costPerConnectionHour and usage.currency into the dashboard's cost variables, and refuses a negative price", () => {
    const objs = helmTemplate({ "grafanaDashboard.enabled": true, "usage.currency": "EUR" }, ["--set-json", "usage.costPerConnectionHour=0.002"]);
    const cm = one(objs, "ConfigMap") as unknown as { data: Record<string, string> };
    const vars = (JSON.parse(cm.data["connmeter.json"]!) as { templating: { list: { name: string; query?: string }[] } }).templating.list;
    expect(vars.find((v) => v.name === "cost_per_connection_hour")?.query).toBe("0.002");
    expect(vars.find((v) => v.name === "currency")?.query).toBe("EUR");
    expect(() => helmTemplate({}, ["--set-json", "usage.costPerConnectionHour=-1"])).toThrow(/costPerConnectionHour/);
  });
  // --- end usage ---

  it("documents every value in the chart README", () => {
    const readme = readFileSync(join(CHART_DIR, "README.md"), "utf8");
    const values = parseYamlDocs(readFileSync(join(CHART_DIR, "values.yaml"), "utf8"))[0] as unknown as Record<string, unknown>;
    const keys: string[] = [];
    const walk = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        const key = prefix + k;
        // Maps whose content is Kubernetes' own (resources, security contexts, probes) are documented as one value.
        if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length && !/resources|SecurityContext|securityContext|Probe|labels|namespaceSelector/.test(k)) walk(v as Record<string, unknown>, `${key}.`);
        else keys.push(key);
      }
    };
    walk(values, "");
    const undocumented = keys.filter((k) => !readme.includes(`\`${k}\``));
    expect(undocumented).toEqual([]);
  });
});
