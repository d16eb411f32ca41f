// The operator's label on namespaces that hold a ConnectionPolicy (connmeter.io/has-policy):
// the webhook's namespaceSelector, so the API server sends the webhook pods of those
// namespaces only. Set when a policy is reconciled, removed with the namespace's last policy
// (on the finalizer's cleanup, or when a policy vanished without it). Only that one label is
// ever written (a merge patch of it alone).
import { POLICY_NAMESPACE_LABEL, type ConnectionPolicy } from "../api/types.js";
import type { Lister } from "./cluster.js";

export interface NamespaceLabelWriter {
  patchNamespaceLabels(namespace: string, labels: Record<string, string | null>): Promise<void>;
}

export class NamespaceMarker {
  /** Namespaces labelled by this process (a restart labels each once more: the patch is idempotent). */
  private readonly marked = new Set<string>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly writer: NamespaceLabelWriter,
    private readonly policies: Lister<ConnectionPolicy>,
    private readonly log: (line: string) => void,
  ) {}

  /** Labels the policy's namespace, once per process; a failure is logged once and retried at the next reconcile. */
  async ensure(namespace: string): Promise<void> {
    if (this.marked.has(namespace)) return;
    try {
      await this.writer.patchNamespaceLabels(namespace, { [POLICY_NAMESPACE_LABEL]: "true" });
      this.marked.add(namespace);
      this.warned.delete(namespace);
    } catch (err) {
      this.warnOnce(namespace, `could not label namespace ${namespace} ${POLICY_NAMESPACE_LABEL}=true (its pods are not injected): ${(err as Error).message}`);
    }
  }

  /** Removes the label when no policy but `leaving` remains in the namespace. Never throws: cleanup must go on. */
  async release(namespace: string, leaving: string): Promise<void> {
    const others = this.policies.list(namespace).filter((p) => p.metadata.name !== leaving && !p.metadata.deletionTimestamp);
    if (others.length > 0) return;
    try {
      await this.writer.patchNamespaceLabels(namespace, { [POLICY_NAMESPACE_LABEL]: null });
      this.marked.delete(namespace);
    } catch (err) {
      this.log(`could not remove label ${POLICY_NAMESPACE_LABEL} from namespace ${namespace}: ${(err as Error).message}; remove it with kubectl label namespace ${namespace} ${POLICY_NAMESPACE_LABEL}-`);
    }
  }

  private warnOnce(namespace: string, line: string): void {
    if (this.warned.has(namespace)) return;
    this.warned.add(namespace);
    this.log(line);
  }
}
