// Imported first by sidecar/main.ts and operator/main.ts: under an older Node the imports that
// follow crash with a stack trace from deep inside a dependency (undici reads zlib's zstd
// functions, which Node 20 lacks). ES modules are evaluated in import order, so this check runs
// before any of them and exits with what to run instead.

/** The oldest Node the sidecar and the operator run on: package.json's `engines.node`. */
export const MIN_NODE_VERSION = "24.11.0";

/** Where `make node` caches the pinned Node (Makefile NODE_VERSION and CACHE_DIR). */
export const CACHED_NODE_HINT = "~/.cache/connmeter/node-v24.22.3/bin";

/** Whether `version` ("24.1.0" or "v24.1.0") is at least `min`, compared numerically. */
export function nodeVersionAtLeast(version: string, min: string): boolean {
  const have = version.replace(/^v/, "").split(".").map((p) => Number.parseInt(p, 10) || 0);
  const need = min.split(".").map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < need.length; i++) {
    const h = have[i] ?? 0;
    if (h !== need[i]) return h > need[i]!;
  }
  return true;
}

/** The message for a Node that is too old, or undefined when `version` is new enough. */
export function wrongNodeMessage(program: string, version: string, execPath: string): string | undefined {
  if (nodeVersionAtLeast(version, MIN_NODE_VERSION)) return undefined;
  return [
    `${program}: needs Node >= ${MIN_NODE_VERSION}, but this is Node ${version} (${execPath}).`,
    `  Run \`make node\` in the connmeter checkout: it fetches the pinned Node 24 into ${CACHED_NODE_HINT}`,
    `  (or $CONNMETER_CACHE_DIR/node-v24.22.3/bin), then put that first on PATH:`,
    `    export PATH=${CACHED_NODE_HINT}:$PATH`,
  ].join("\n");
}

const program = process.argv[1]?.includes("operator") ? "connmeter-operator" : "connmeter-sidecar";
const message = wrongNodeMessage(program, process.version, process.execPath);
if (message !== undefined) {
  console.error(message);
  process.exit(1);
}
