import { describe, expect, it } from "vitest";
import type { ConnectionPolicy } from "../../../../operator/api/types.js";
import { NamespaceMarker } from "../../../../operator/controller/namespace-marker.js";

function setup(policies: ConnectionPolicy[]) {
  const patches: [string, Record<string, string | null>][] = [];
  const marker = new NamespaceMarker({ patchNamespaceLabels: async (ns, labels) => void patches.push([ns, labels]) },
    { get: () => undefined, list: (ns) => policies.filter((p) => p.metadata.namespace === ns) }, () => {});
  return { marker, patches };
}
const policy = (name: string, deleting = false): ConnectionPolicy => ({
  metadata: { name, namespace: "chat", ...(deleting ? { deletionTimestamp: "2026-12-02T00:00:00Z" } : {}) },
  spec: { targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" } },
});

describe("NamespaceMarker", () => {
  it("labels a policy's namespace once, with only its own label", async () => {
    const { marker, patches } = setup([policy("a")]);
    await marker.ensure("chat");
    await marker.ensure("chat");
    expect(patches).toEqual([["chat", { "connmeter.io/has-policy": "true" }]]);
  });

  it("removes the label with the namespace's last policy only", async () => {
    const { marker, patches } = setup([policy("a"), policy("b")]);
    await marker.release("chat", "a");
    expect(patches).toEqual([]);
    const last = setup([policy("a"), policy("b", true)]);
    await last.marker.release("chat", "a");
    expect(last.patches).toEqual([["chat", { "connmeter.io/has-policy": null }]]);
  });
});
