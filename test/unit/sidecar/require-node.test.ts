import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MIN_NODE_VERSION, nodeVersionAtLeast, wrongNodeMessage } from "../../../sidecar/require-node.js";

describe("the Node version check at start", () => {
  it("matches package.json's engines.node", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_VERSION.replace(/\.0$/, "")}`);
  });

  it.each([
    ["v24.11.0", true], ["v24.22.3", true], ["v25.0.0", true], ["v24.10.9", false], ["v20.20.2", false], ["v18.0.0", false], ["24.11.1", true],
  ])("%s is new enough: %s", (version, ok) => {
    expect(nodeVersionAtLeast(version, MIN_NODE_VERSION)).toBe(ok);
  });

  it("tells the user of an old Node what to run", () => {
    const msg = wrongNodeMessage("connmeter-sidecar", "v20.20.2", "/usr/bin/node");
    expect(msg).toContain("needs Node >= 24.11.0, but this is Node v20.20.2 (/usr/bin/node)");
    expect(msg).toContain("make node");
    expect(msg).toContain("node-v24.22.3/bin");
    expect(wrongNodeMessage("connmeter-sidecar", process.version, process.execPath)).toBeUndefined();
  });
});
