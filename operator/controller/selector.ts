// A workload's spec.selector (metav1.LabelSelector) as a predicate over pod labels.

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * Whether `labels` match `selector`, by metav1.LabelSelector rules: every matchLabels pair and
 * every expression (In, NotIn, Exists, DoesNotExist) must hold. An empty selector matches
 * nothing here, unlike the API's "everything": a workload always has a non-empty one, and
 * metering every pod of a namespace by mistake is worse than metering none.
 */
export function selectorMatches(selector: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  const ml = Object.entries(selector?.matchLabels ?? {});
  const me = selector?.matchExpressions ?? [];
  if (ml.length === 0 && me.length === 0) return false;
  const l = labels ?? {};
  for (const [k, v] of ml) if (l[k] !== v) return false;
  for (const e of me) {
    const has = Object.hasOwn(l, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case "In": if (!has || !values.includes(l[e.key]!)) return false; break;
      case "NotIn": if (has && values.includes(l[e.key]!)) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
      default: return false;
    }
  }
  return true;
}
