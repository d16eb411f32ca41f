// The webhook's flags (operator/config.ts lists them): where it listens, which Secret and
// MutatingWebhookConfiguration it keeps, and the sidecar it injects (the chart's values).
import { ADMIN_TOKEN_SECRET } from "../../sidecar/admin/contract.js";
import { ConfigError, parseHostPort, type HostPort } from "../../sidecar/cli-flags.js";
import type { InjectionSettings, ResourceRequirements } from "./sidecar-patch.js";

export interface WebhookConfig {
  addr: HostPort;
  /** The TLS Secret's name, in the operator's namespace. */
  tlsSecret: string;
  /** Create, renew and rotate the certificate and patch the caBundle (false: cert-manager does). */
  manageCertificate: boolean;
  /** The MutatingWebhookConfiguration whose caBundle the leader keeps. */
  configurationName: string;
  /** The webhook Service's name (the certificate's DNS names). */
  serviceName: string;
  sidecar: InjectionSettings;
}

export const WEBHOOK_FLAGS = {
  "webhook-addr": { env: "CONNMETER_WEBHOOK_ADDR", default: "", help: "serve the injection webhook (HTTPS) on host:port; empty = no webhook" },
  "webhook-tls-secret": { env: "CONNMETER_WEBHOOK_TLS_SECRET", default: "connmeter-webhook-tls", help: "Secret (operator's namespace) holding the webhook's CA and serving certificate" },
  "webhook-manage-certificate": { env: "CONNMETER_WEBHOOK_MANAGE_CERTIFICATE", default: "true", help: "the leader creates, renews and rotates the certificate and patches the caBundle (false: cert-manager)" },
  "webhook-configuration": { env: "CONNMETER_WEBHOOK_CONFIGURATION", default: "connmeter-injector", help: "MutatingWebhookConfiguration whose caBundle the leader keeps" },
  "webhook-service": { env: "CONNMETER_WEBHOOK_SERVICE", default: "connmeter-webhook", help: "the webhook's Service (names in the certificate)" },
  "sidecar-image": { env: "CONNMETER_SIDECAR_IMAGE", default: "connmeter/sidecar:0.1.0", help: "image of the injected sidecar" },
  "sidecar-image-pull-policy": { env: "CONNMETER_SIDECAR_IMAGE_PULL_POLICY", default: "", help: "its imagePullPolicy (empty: the cluster's default)" },
  "sidecar-listen-port": { env: "CONNMETER_SIDECAR_LISTEN_PORT", default: "4001", help: "the injected sidecar's public port" },
  "sidecar-resources": { env: "CONNMETER_SIDECAR_RESOURCES", default: '{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}', help: "its resources, JSON {requests, limits} (both required)" },
  "sidecar-await-budget-seconds": { env: "CONNMETER_SIDECAR_AWAIT_BUDGET_SECONDS", default: "30", help: "its --await-budget-seconds (0 = off)" },
  "sidecar-drain-seconds": { env: "CONNMETER_SIDECAR_DRAIN_SECONDS", default: "", help: "its --drain-seconds (empty: the sidecar's default)" },
  "sidecar-port-name": { env: "CONNMETER_SIDECAR_PORT_NAME", default: "http", help: "the app port taken over when a policy names none" },
  "sidecar-redirect-init-image": { env: "CONNMETER_SIDECAR_REDIRECT_INIT_IMAGE", default: "", help: "redirect mode's init container image (sh + iptables; NET_ADMIN); empty = redirect mode refused" },
  "sidecar-probe-port": { env: "CONNMETER_SIDECAR_PROBE_PORT", default: "4002", help: "redirect mode: the port kubelet probes are rewritten to, redirected straight to the app" },
} as const;

export type WebhookFlag = keyof typeof WEBHOOK_FLAGS;

/** The webhook's config, or undefined when --webhook-addr is empty. Throws ConfigError naming the bad flag. */
export function loadWebhookConfig(get: (name: WebhookFlag) => string): WebhookConfig | undefined {
  if (!get("webhook-addr")) return undefined;
  const manage = get("webhook-manage-certificate").trim().toLowerCase();
  if (!["true", "false"].includes(manage)) throw new ConfigError(`--webhook-manage-certificate must be true or false, got "${get("webhook-manage-certificate")}"`);
  const drain = get("sidecar-drain-seconds");
  return {
    addr: parseHostPort("webhook-addr", get("webhook-addr")),
    tlsSecret: name("webhook-tls-secret", get("webhook-tls-secret")),
    manageCertificate: manage === "true",
    configurationName: name("webhook-configuration", get("webhook-configuration")),
    serviceName: name("webhook-service", get("webhook-service")),
    sidecar: {
      image: nonEmpty("sidecar-image", get("sidecar-image")),
      ...(get("sidecar-image-pull-policy") ? { imagePullPolicy: pullPolicy(get("sidecar-image-pull-policy")) } : {}),
      listenPort: port("sidecar-listen-port", get("sidecar-listen-port")),
      adminPort: 9090,
      resources: resources(get("sidecar-resources")),
      portName: name("sidecar-port-name", get("sidecar-port-name")),
      mode: "named-port",
      awaitBudgetSeconds: seconds("sidecar-await-budget-seconds", get("sidecar-await-budget-seconds")),
      ...(drain ? { drainSeconds: seconds("sidecar-drain-seconds", drain) } : {}),
      topicGroups: [],
      adminTokenSecret: ADMIN_TOKEN_SECRET,
      defaultUpstreamPort: 4000,
      ...(get("sidecar-redirect-init-image") ? { redirectInitImage: get("sidecar-redirect-init-image") } : {}),
      probePort: port("sidecar-probe-port", get("sidecar-probe-port")),
    },
  };
}

function nonEmpty(flag: string, v: string): string {
  if (!v.trim()) throw new ConfigError(`--${flag} must not be empty`);
  return v.trim();
}

function name(flag: string, v: string): string {
  if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(v)) throw new ConfigError(`--${flag} must be a Kubernetes name (lowercase letters, digits, '-', '.'), got "${v}"`);
  return v;
}

function pullPolicy(v: string): string {
  if (!["Always", "IfNotPresent", "Never"].includes(v)) throw new ConfigError(`--sidecar-image-pull-policy must be Always, IfNotPresent or Never, got "${v}"`);
  return v;
}

function port(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`--${flag} must be a port in 1..65535, got "${v}"`);
  return n;
}

function seconds(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 3600) throw new ConfigError(`--${flag} must be whole seconds in 0..3600, got "${v}"`);
  return n;
}

/** Parses and checks the resources JSON: requests and limits both present, quantities as strings. */
export function resources(v: string): ResourceRequirements {
  let r: unknown;
  try {
    r = JSON.parse(v);
  } catch {
    throw new ConfigError(`--sidecar-resources must be JSON like {"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"memory":"256Mi"}}, got "${v}"`);
  }
  const ok = (m: unknown): m is Record<string, string> => typeof m === "object" && m !== null && !Array.isArray(m)
    && Object.keys(m).length > 0 && Object.values(m).every((q) => typeof q === "string" && /^[0-9.]+[a-zA-Z]*$/.test(q));
  const { requests, limits } = (r ?? {}) as { requests?: unknown; limits?: unknown };
  if (!ok(requests) || !ok(limits)) {
    throw new ConfigError("--sidecar-resources needs non-empty requests and limits with quantity strings (pods whose containers lack them are refused by ResourceQuotas)");
  }
  return { requests, limits };
}
