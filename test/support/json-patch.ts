// A strict RFC 6902 applier for tests (add, replace, remove, test), failing where the API
// server's json-patch fails: a missing parent, an index out of range, a failed test. It lets
// the injector's tests assert the pod that results, not only the operations.
import type { JsonPatchOp } from "../../operator/webhook/pod-spec.js";

function tokens(path: string): string[] {
  if (!path.startsWith("/")) throw new Error(`bad pointer ${path}`);
  return path.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** The document after `ops`, applied in order to a deep copy; throws on the first failing op. */
export function applyJsonPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  const root = structuredClone(doc) as unknown;
  for (const op of ops) {
    const path = tokens(op.path);
    const last = path.pop()!;
    let parent = root as Record<string, unknown> | unknown[];
    for (const t of path) {
      const next: unknown = Array.isArray(parent) ? parent[Number(t)] : parent[t];
      if (next === null || typeof next !== "object") throw new Error(`${op.op} ${op.path}: missing ${t}`);
      parent = next as Record<string, unknown> | unknown[];
    }
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length || (op.op !== "add" && i >= parent.length)) throw new Error(`${op.op} ${op.path}: index out of range`);
      if (op.op === "add") parent.splice(i, 0, op.value);
      else if (op.op === "replace") parent[i] = op.value;
      else if (op.op === "remove") parent.splice(i, 1);
      else if (JSON.stringify(parent[i]) !== JSON.stringify(op.value)) throw new Error(`test ${op.path} failed`);
      continue;
    }
    if (op.op !== "add" && !Object.hasOwn(parent, last)) throw new Error(`${op.op} ${op.path}: no such member`);
    if (op.op === "add" || op.op === "replace") parent[last] = op.value;
    else if (op.op === "remove") delete parent[last];
    else if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) throw new Error(`test ${op.path} failed`);
  }
  return root as T;
}
