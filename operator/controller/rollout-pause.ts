// Rollout guard, action pause (issue 18): when RolloutChurn turns True, pause the target
// Deployment (spec.paused: true) once per new revision, as a careful SRE would: read it, decide
// from the read, write only spec.paused with the read's resourceVersion, and on 409 read and
// decide again. Once a revision was paused (or found paused), it is never paused again, so a
// user's `kubectl rollout resume` stands. connmeter never resumes and never rolls back.
import type { RolloutGuardSpec, TargetKind } from "../api/types.js";
import { isConflict, type ClusterWriter } from "./cluster.js";

/** Read-decide-write rounds in one reconcile before giving up until the next interval. */
export const MAX_PAUSE_ATTEMPTS = 3;

/** What the guard did for the last new revision it paused (remembered until another is, and shown in status.rollout while that revision is the new one). */
export interface PauseRecord {
  revision: string;
  /** paused: this operator set spec.paused; foundPaused: someone had paused it already. */
  how: "paused" | "foundPaused";
  atMs: number;
  /**
   * The informer cache has shown the Deployment paused since. Only then does a cache saying
   * "not paused" mean someone resumed it: right after the write, the cache may not have it yet.
   */
  seenPaused: boolean;
}

export type PauseDecision =
  /** action none: report only. */
  | "off"
  /** action pause on a StatefulSet: it has no spec.paused. */
  | "cannotPause"
  /** Pause now. */
  | "pause"
  /** This revision was paused (or found paused) already: never again. */
  | "done";

/** Whether to pause, from the verdict and what was done so far. Pure. */
export function decidePause(guard: RolloutGuardSpec, kind: TargetKind, exceeded: boolean, newRevision: string, done: PauseRecord | undefined): PauseDecision {
  if (guard.action !== "pause" || !exceeded) return "off";
  if (kind !== "Deployment") return "cannotPause";
  return done?.revision === newRevision ? "done" : "pause";
}

export type PauseOutcome =
  | { kind: "paused" }
  | { kind: "foundPaused" }
  /** Its spec changed between two reads (a rollback, a new template, a scale): decided again next interval. */
  | { kind: "changed" }
  | { kind: "failed"; error: string };

/**
 * Pauses a Deployment with a resourceVersion precondition. A conflict is read again; the pause
 * is written again only while the Deployment's generation is the one first read (metadata or
 * status changed), never over a spec change made meanwhile.
 */
export async function pauseDeployment(writer: Pick<ClusterWriter, "getDeployment" | "pauseDeployment">, namespace: string, name: string): Promise<PauseOutcome> {
  let generation: number | undefined;
  for (let attempt = 1; attempt <= MAX_PAUSE_ATTEMPTS; attempt++) {
    let d;
    try {
      d = await writer.getDeployment(namespace, name);
    } catch (err) {
      return { kind: "failed", error: `reading Deployment ${name} failed: ${(err as Error).message} (the operator needs get on deployments)` };
    }
    if (!d) return { kind: "failed", error: `Deployment ${name} was not found` };
    if (d.paused) return { kind: "foundPaused" };
    if (generation !== undefined && d.generation !== generation) return { kind: "changed" };
    generation = d.generation;
    try {
      await writer.pauseDeployment(namespace, name, d.resourceVersion);
      return { kind: "paused" };
    } catch (err) {
      if (!isConflict(err)) return { kind: "failed", error: `pausing Deployment ${name} failed: ${(err as Error).message} (the operator needs patch on deployments)` };
    }
  }
  return { kind: "failed", error: `Deployment ${name} changed between read and write ${MAX_PAUSE_ATTEMPTS} times (409 Conflict); tried again next interval` };
}

/** The commands a person needs, for messages and Events. */
export function rolloutCommands(kind: TargetKind, name: string, namespace: string): { resume: string; undo: string; pause: string } {
  const ref = `${kind.toLowerCase()}/${name} -n ${namespace}`;
  return { resume: `kubectl rollout resume ${ref}`, undo: `kubectl rollout undo ${ref}`, pause: `kubectl rollout pause ${ref}` };
}

/**
 * What RolloutChurn's message says was done about it (appended to the numbers). It changes
 * only when the pause state does, so it never forces a status write per scrape.
 */
export function pauseNote(o: {
  guard: RolloutGuardSpec; kind: TargetKind; name: string; namespace: string;
  done: PauseRecord | undefined; newRevision: string | undefined; resumed: boolean; error: string | undefined;
}): string {
  const c = rolloutCommands(o.kind, o.name, o.namespace);
  const never = "connmeter never rolls back by itself";
  const hold = o.kind === "Deployment" ? c.pause : "raise its spec.updateStrategy.rollingUpdate.partition";
  if (o.guard.action !== "pause") return `spec.rolloutGuard.action is none: reported only (${never}). To stop the rollout: ${hold}; to roll back: ${c.undo}`;
  if (o.kind !== "Deployment") {
    return `spec.rolloutGuard.action is pause, but a StatefulSet cannot be paused (it has no spec.paused): reported only. `
      + `To hold its rollout, raise spec.updateStrategy.rollingUpdate.partition; to roll back: ${c.undo}`;
  }
  if (o.error !== undefined && o.done?.revision !== o.newRevision) return `Could not pause Deployment ${o.name} (tried again every interval): ${o.error}. To roll back: ${c.undo}`;
  if (!o.done) return `Pausing Deployment ${o.name}`;
  const what = o.done.how === "paused"
    ? `connmeter paused Deployment ${o.name} (spec.paused: true) for revision ${o.done.revision}`
    : `Deployment ${o.name} was already paused when revision ${o.done.revision} churned; connmeter left it so`;
  if (o.resumed) return `${what}; it has been resumed since, and connmeter does not pause this revision again (${never}). To roll back: ${c.undo}`;
  return `${what}; ${never}. To go on with the rollout: ${c.resume} (connmeter does not pause this revision again); to roll back: ${c.undo}`;
}
