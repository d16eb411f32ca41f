import { describe, expect, it } from "vitest";
import { NamespaceTokens, type SecretRead } from "../../../../operator/k8s/tokens.js";
import { KubeApiError } from "../../../../operator/k8s/request.js";

/** A Secret reader over a table, counting GETs per namespace. */
function secrets(table: Record<string, string | null | Error>) {
  const reads: string[] = [];
  const read: SecretRead = (ns) => {
    reads.push(ns);
    const v = table[ns];
    return v instanceof Error ? Promise.reject(v) : Promise.resolve(v ?? null);
  };
  return { read, reads, table };
}

describe("NamespaceTokens", () => {
  it("answers a namespace's own token, else the operator's (404), reading each Secret once per refresh period", async () => {
    let now = 0;
    const s = secrets({ a: "tok-a" });
    const tokens = new NamespaceTokens({ read: s.read, fallback: "own", refreshMs: 30_000, clock: () => now });
    expect(await tokens.token("a")).toBe("tok-a");
    expect(await tokens.token("b")).toBe("own");
    expect(await tokens.token("a")).toBe("tok-a");
    expect(s.reads).toEqual(["a", "b"]);
    s.table.a = "rotated";
    now += 30_000;
    expect(await tokens.token("a")).toBe("rotated");
    expect(s.reads).toEqual(["a", "b", "a"]);
  });

  it("shares one GET among concurrent callers", async () => {
    const s = secrets({ a: "tok-a" });
    const tokens = new NamespaceTokens({ read: s.read, fallback: undefined });
    expect(await Promise.all([tokens.token("a"), tokens.token("a"), tokens.token("a")])).toEqual(["tok-a", "tok-a", "tok-a"]);
    expect(s.reads).toEqual(["a"]);
  });

  it("re-reads at once after a sidecar's 401, but at most once per second however many pods refuse", async () => {
    let now = 0;
    const s = secrets({ a: "old" });
    const tokens = new NamespaceTokens({ read: s.read, fallback: undefined, rereadMinMs: 1000, clock: () => now });
    expect(await tokens.token("a")).toBe("old");
    s.table.a = "new";
    now += 1000;
    for (let i = 0; i < 100; i++) tokens.refused("a", "old");
    expect(await tokens.token("a")).toBe("new");
    tokens.refused("a", "new"); // within a second of the last read: no new GET
    expect(await tokens.token("a")).toBe("new");
    expect(s.reads).toEqual(["a", "a"]);
  });

  it("keeps the last known token when a read fails, uses the fallback when none is known, and says why once", async () => {
    let now = 0;
    const log: string[] = [];
    const s = secrets({ a: "tok-a", b: new KubeApiError(403, "forbidden", "Forbidden", "GET /api/v1/namespaces/b/secrets/connmeter-admin-token") });
    const tokens = new NamespaceTokens({ read: s.read, fallback: "own", refreshMs: 10, clock: () => now, log: (l) => log.push(l) });
    expect(await tokens.token("a")).toBe("tok-a");
    s.table.a = new Error("connection refused");
    now += 10;
    expect(await tokens.token("a")).toBe("tok-a");
    expect(await tokens.token("b")).toBe("own");
    now += 10;
    expect(await tokens.token("b")).toBe("own");
    expect(log).toHaveLength(2);
    expect(log[1]).toMatch(/Secret b\/connmeter-admin-token failed: forbidden \(the operator's role needs `get` on secrets named connmeter-admin-token\)/);
  });

  it("remembers at most maxNamespaces, forgetting the least recently used", async () => {
    const s = secrets({});
    const tokens = new NamespaceTokens({ read: s.read, fallback: "own", maxNamespaces: 2 });
    await tokens.token("a");
    await tokens.token("b");
    await tokens.token("a");
    await tokens.token("c"); // b goes
    expect(tokens.size).toBe(2);
    await tokens.token("a");
    await tokens.token("b");
    expect(s.reads).toEqual(["a", "b", "c", "b"]);
  });
});
