// `kubectl explain connpol.spec...` prints a field's description, not its schema's default or
// bounds: every spec field with a default, a minimum or a maximum must say it in words.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findRepoRoot } from "../env/config.js";
import { parseYamlDocs } from "../env/helm.js";

interface Schema {
  description?: string;
  default?: unknown;
  /** How client-node's typed model (parseYamlDocs) names `default`. */
  _default?: unknown;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, Schema>;
  items?: Schema;
}

/** Every field under `schema`, with its path. */
function fields(schema: Schema, path: string): [string, Schema][] {
  const out: [string, Schema][] = [];
  for (const [name, s] of Object.entries(schema.properties ?? {})) {
    out.push([`${path}.${name}`, s], ...fields(s, `${path}.${name}`));
    if (s.items) out.push(...fields(s.items, `${path}.${name}[]`));
  }
  return out;
}

const crd = parseYamlDocs(readFileSync(join(findRepoRoot(), "crds/connectionpolicies.connmeter.io.yaml"), "utf8"))[0] as unknown as {
  spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: Schema } } } }[] };
};
const spec = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec;

describe("the CRD's descriptions, as kubectl explain shows them", () => {
  const scalars = fields(spec, "spec").filter(([, s]) => !s.properties);
  it("finds the fields (a parse that lost them would make this file pass on nothing)", () => {
    expect(scalars.filter(([, s]) => (s.default ?? s._default) !== undefined).length).toBeGreaterThanOrEqual(10);
    expect(scalars.filter(([, s]) => s.minimum !== undefined).length).toBeGreaterThanOrEqual(10);
  });
  it.each(scalars.filter(([, s]) => (s.default ?? s._default) !== undefined).map(([p, s]) => [p, s]))("%s says its default", (_path, s) => {
    expect(s.description).toMatch(/Default /);
  });
  it.each(scalars.filter(([, s]) => s.minimum !== undefined || s.maximum !== undefined).map(([p, s]) => [p, s]))("%s says its range", (_path, s) => {
    if (s.maximum !== undefined) expect(s.description).toContain(`${s.minimum ?? ""} to ${s.maximum}`.trimStart());
    else expect(s.description).toContain(`at least ${s.minimum}`);
  });
});
