// The operator's finalizer on a ConnectionPolicy (connmeter.io/cleanup) and the cleanup it
// guards: lifting the budgets pushed to the target's sidecars (DELETE /config) and removing the
// deletion costs the policy wrote. Finalizers are written with the policy's resourceVersion as
// a precondition, so a finalizer another tool (Argo CD, Flux, backup tools) added or removed
// since our read is never clobbered: the write fails with 409 and is decided again from the
// fresh object. Cleanup is bounded: sidecars that stay unreachable lose their budgets to the
// TTL anyway, so a deletion is never held for them.
import {
  CLEANUP_FINALIZER, DELETION_COST_ANNOTATION, DELETION_COST_OWNER_ANNOTATION, type ConnectionPolicy,
} from "../api/types.js";
import type { SidecarClient, SidecarScope } from "../scrape/sidecar-client.js";
import { writeErrorStatus, type ClusterWriter, type Lister, type PodLike } from "./cluster.js";

/** Cleanup attempts of one deleted policy before its finalizer is removed anyway. */
export const MAX_CLEANUP_ATTEMPTS = 3;
/** Delay before a failed cleanup is tried again, in ms (multiplied by the attempt number). */
export const CLEANUP_RETRY_MS = 1000;
/** Bound of one DELETE /config during cleanup, in ms. */
export const CLEANUP_REQUEST_TIMEOUT_MS = 2000;

export function hasCleanupFinalizer(policy: ConnectionPolicy): boolean {
  return policy.metadata.finalizers?.includes(CLEANUP_FINALIZER) ?? false;
}

/**
 * Adds connmeter's finalizer, keeping every other one, if the policy is unchanged since it was
 * read. Throws the writer's error (409 when the policy changed meanwhile).
 */
export async function addCleanupFinalizer(writer: Pick<ClusterWriter, "patchPolicyFinalizers">, policy: ConnectionPolicy): Promise<void> {
  const { namespace, name, resourceVersion, finalizers = [] } = policy.metadata;
  if (!resourceVersion) throw new Error(`policy ${namespace}/${name} has no metadata.resourceVersion: cannot add a finalizer without a precondition`);
  await writer.patchPolicyFinalizers(namespace, name, [...finalizers, CLEANUP_FINALIZER], resourceVersion);
}

/** Removes connmeter's finalizer only, if the policy is unchanged since it was read (409 otherwise). */
export async function removeCleanupFinalizer(writer: Pick<ClusterWriter, "patchPolicyFinalizers">, policy: ConnectionPolicy): Promise<void> {
  const { namespace, name, resourceVersion, finalizers = [] } = policy.metadata;
  await writer.patchPolicyFinalizers(namespace, name, finalizers.filter((f) => f !== CLEANUP_FINALIZER), resourceVersion ?? "");
}

/** A sidecar that may hold a budget of the policy. */
export interface BudgetHolder {
  name: string;
  ip: string;
}

/**
 * Lifts each pod's pushed config (DELETE /config: the sidecar falls back to its flags), all at
 * once, each bounded by CLEANUP_REQUEST_TIMEOUT_MS. Returns the pods that did not answer.
 */
export async function liftBudgets(
  sidecars: Pick<SidecarClient, "resetConfig">, pods: readonly BudgetHolder[], adminPort: number, scope: SidecarScope, onError: (pod: string, err: Error) => void,
): Promise<string[]> {
  const failed: string[] = [];
  await Promise.all(pods.map(async (p) => {
    try {
      await sidecars.resetConfig(p.ip, adminPort, CLEANUP_REQUEST_TIMEOUT_MS, scope);
    } catch (err) {
      failed.push(p.name);
      onError(p.name, err as Error);
    }
  }));
  return failed.sort();
}

/**
 * Removes the deletion costs the policy wrote (marked with its name), leaving others' alone. A
 * pod already gone (404) needs nothing. Returns the pods whose annotation could not be removed.
 */
export async function removeDeletionCosts(
  writer: Pick<ClusterWriter, "patchPodAnnotations">, pods: Lister<PodLike>, namespace: string, policy: string, onError: (pod: string, err: Error) => void,
): Promise<string[]> {
  const ours = pods.list(namespace).filter((p) => p.metadata?.name && p.metadata.annotations?.[DELETION_COST_OWNER_ANNOTATION] === policy);
  const failed: string[] = [];
  await Promise.all(ours.map(async (p) => {
    try {
      await writer.patchPodAnnotations(namespace, p.metadata!.name!, { [DELETION_COST_ANNOTATION]: null, [DELETION_COST_OWNER_ANNOTATION]: null });
    } catch (err) {
      if (writeErrorStatus(err) === 404) return;
      failed.push(p.metadata!.name!);
      onError(p.metadata!.name!, err as Error);
    }
  }));
  return failed.sort();
}

/** The pods in `a` and `b`, once each by name (a pod pushed to earlier may no longer be selected). */
export function unionByName(a: readonly BudgetHolder[], b: readonly BudgetHolder[]): BudgetHolder[] {
  const byName = new Map<string, BudgetHolder>();
  for (const p of [...a, ...b]) byName.set(p.name, { name: p.name, ip: p.ip });
  return [...byName.values()];
}
