// The soak's Kubernetes clients, and calls that ride out an API server restart: the soak
// restarts kube-apiserver on purpose, so its own reads and writes retry for a bounded time.
import {
  AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, type KubeConfig,
} from "@kubernetes/client-node";
import { apiMessage, apiStatus, loadKubeConfig } from "../env/kube.js";
import { sleep } from "./soak-log.js";

export interface SoakKube {
  readonly kubeconfig: string;
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  readonly coordination: CoordinationV1Api;
  readonly events: EventsV1Api;
}

export function soakKube(kubeconfig: string): SoakKube {
  const kc = loadKubeConfig(kubeconfig);
  return {
    kubeconfig, kc,
    core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api), events: kc.makeApiClient(EventsV1Api),
  };
}

/** The ConnectionPolicy resource, for CustomObjectsApi calls. */
export const CONNPOL = { group: "connmeter.io", version: "v1alpha1", plural: "connectionpolicies" } as const;

export { apiMessage, apiStatus };

/**
 * Runs `fn`, retrying transport errors and 5xx/429 answers every 500 ms for up to
 * `timeoutMs` (an API server restart takes a few seconds); 4xx answers are thrown at once.
 */
export async function retrying<T>(what: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const status = apiStatus(err);
      const transient = status === undefined || status >= 500 || status === 429;
      if (!transient || Date.now() >= deadline) throw new Error(`${what}: ${apiMessage(err)}`, { cause: err });
      await sleep(500);
    }
  }
}

/** Whether an error is a 404 from the API server. */
export function isNotFound(err: unknown): boolean {
  return apiStatus(err) === 404 || apiStatus((err as { cause?: unknown })?.cause) === 404;
}
