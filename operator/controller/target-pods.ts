// Pure reads of the pod cache: which pods of a policy's target can be scraped, and which cannot
// start (and why), for the reconciler.
import type { PodStartProblem } from "./assess.js";
import type { Lister, PodLike, WorkloadLike } from "./cluster.js";
import type { ScrapeTarget } from "./pod-samples.js";
import { selectorMatches } from "./selector.js";

function isReady(p: PodLike): boolean {
  return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** The target's Running pods with an IP (the ones whose sidecar can answer), by name. */
export function scrapeTargets(pods: Lister<PodLike>, namespace: string, target: WorkloadLike): ScrapeTarget[] {
  const out: ScrapeTarget[] = [];
  for (const p of pods.list(namespace)) {
    if (!selectorMatches(target.spec?.selector, p.metadata?.labels)) continue;
    if (p.status?.phase !== "Running" || !p.status.podIP || !p.metadata?.name) continue;
    out.push({ name: p.metadata.name, ip: p.status.podIP, node: p.spec?.nodeName, ready: isReady(p), terminating: Boolean(p.metadata.deletionTimestamp) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The target's pods whose containers wait on something a user must fix (not pods being deleted), by name. */
export function startProblems(pods: Lister<PodLike>, namespace: string, target: WorkloadLike): PodStartProblem[] {
  const out: PodStartProblem[] = [];
  for (const p of pods.list(namespace)) {
    const waiting = p.status?.waiting;
    if (!waiting?.length || p.metadata?.deletionTimestamp || !selectorMatches(target.spec?.selector, p.metadata?.labels)) continue;
    out.push({ pod: p.metadata?.name ?? "?", namespace, waiting });
  }
  return out.sort((a, b) => a.pod.localeCompare(b.pod));
}

/**
 * Injection (issue 16): the target's pods, not being deleted, that run without connmeter's
 * sidecar, by name: none of their containers looks like it (hasSidecar false) and the pod
 * was scraped and never answered (`answered` false), so a sidecar pasted under other names
 * is never listed, not even before its first scrape.
 */
export function podsWithoutSidecar(pods: Lister<PodLike>, namespace: string, target: WorkloadLike, answered: (pod: string) => boolean): string[] {
  const out: string[] = [];
  for (const p of pods.list(namespace)) {
    if (p.spec?.hasSidecar !== false || p.metadata?.deletionTimestamp || !p.metadata?.name || answered(p.metadata.name)) continue;
    if (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") continue;
    if (selectorMatches(target.spec?.selector, p.metadata.labels)) out.push(p.metadata.name);
  }
  return out.sort();
}
