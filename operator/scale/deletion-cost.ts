// Pure: controller.kubernetes.io/pod-deletion-cost values from connection counts, so that on a
// scale-down the ReplicaSet removes the emptiest pods first (OPERATOR-NOTES.md §5).

const INT32_MAX = 2_147_483_647;

export interface CostPod {
  name: string;
  /** Connections the pod carries, or undefined when unknown. */
  connections: number | undefined;
  /** The annotation's current value, if any. */
  current: string | undefined;
}

/**
 * The deletion cost to write on each pod whose value must change: its connection count
 * (an int32, as the API server parses it). Pods with unknown counts are left alone: a missing
 * cost is 0, and inventing one would be a guess.
 */
export function deletionCosts(pods: readonly CostPod[]): Map<string, string> {
  const writes = new Map<string, string>();
  for (const p of pods) {
    if (p.connections === undefined) continue;
    const cost = String(Math.min(INT32_MAX, Math.max(0, Math.round(p.connections))));
    if (p.current !== cost) writes.set(p.name, cost);
  }
  return writes;
}
