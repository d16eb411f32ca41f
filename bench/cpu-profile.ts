// Reads a V8 .cpuprofile (written by `node --cpu-prof`) and names the functions that spent
// the most self time, idle time left out.
import { readFileSync } from "node:fs";
import type { HotFunction } from "./bench-report.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
}

const NOT_WORK = new Set(["(idle)", "(root)"]);

function location(url: string, lineNumber: number): string {
  if (url === "") return "(native)";
  const short = url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, "$1/");
  return `${short}:${lineNumber + 1}`;
}

/** The `top` functions by self time, as % of all non-idle samples. */
export function hotFunctions(profilePath: string, top = 15): HotFunction[] {
  const profile = JSON.parse(readFileSync(profilePath, "utf8")) as CpuProfile;
  const byFunction = new Map<string, HotFunction & { hits: number }>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    const name = node.callFrame.functionName || "(anonymous)";
    if (hits === 0 || NOT_WORK.has(name)) continue;
    total += hits;
    const where = location(node.callFrame.url, node.callFrame.lineNumber);
    const key = `${name} ${where}`;
    const entry = byFunction.get(key) ?? { functionName: name, location: where, selfPercent: 0, hits: 0 };
    entry.hits += hits;
    byFunction.set(key, entry);
  }
  return [...byFunction.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, top)
    .map((e) => ({ functionName: e.functionName, location: e.location, selfPercent: (100 * e.hits) / Math.max(1, total) }));
}
