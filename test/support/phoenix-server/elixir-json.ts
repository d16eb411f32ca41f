// JSON encoding the way the real server's Jason output looks on the wire.
//
// Phoenix decodes every client payload into Elixir terms and encodes it again, so what a client
// sends as {"msg":"x","from":"A"} comes back as {"from":"A","msg":"x"}: small Elixir maps keep
// their keys in term order, which for string keys is byte order (s06 traces). We sort keys at
// every depth. Known differences, all outside what the traces exercise: maps with more than 32
// keys are hash-ordered in Erlang (we still sort), floats such as 1.0 stay "1.0" in Elixir but
// become 1 here, and integers beyond 2^53 lose precision in JavaScript.

/** Encodes `value` as compact JSON with object keys sorted at every depth. */
export function encodeJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      return Number.isFinite(value) ? String(value) : "null";
    case "boolean":
      return value ? "true" : "false";
    case "object":
      return Array.isArray(value) ? encodeArray(value) : encodeObject(value as Record<string, unknown>);
    default:
      return "null";
  }
}

function encodeArray(items: readonly unknown[]): string {
  let out = "[";
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out += ",";
    out += encodeJson(items[i]);
  }
  return out + "]";
}

function encodeObject(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  if (keys.length === 0) return "{}";
  keys.sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const v = obj[key];
    if (v === undefined) continue;
    if (!first) out += ",";
    first = false;
    out += JSON.stringify(key) + ":" + encodeJson(v);
  }
  return out + "}";
}
