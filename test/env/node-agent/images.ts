// Images are not pulled: each known image repository maps to a command run from the repository
// root, like an image's ENTRYPOINT. The tag and any registry host are ignored, so
// `connmeter/sidecar:dev` and `ghcr.io/acme/connmeter/sidecar:1.2` both run the local build.
//
//   image repository     ENTRYPOINT (run in the repository root)
//   connmeter/sidecar    node dist/sidecar/main.js
//   connmeter/operator   node dist/operator/main.js
//   connmeter/demo-app   node dist/test/support/phoenix-server-main.js
//   connmeter/node       node            (command/args name the script)
//   connmeter/host       (none)          (command is run on the host as is)
//
// `connmeter-sidecar` (one path segment, dash) is accepted for each as well. CONNMETER_IMAGE_MAP
// may add or override entries: a JSON object {"repository": ["entrypoint", ...]}.
// As with Docker: `command` replaces the ENTRYPOINT, `args` replace the (empty) CMD.
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";

export interface ImageEntry {
  readonly repository: string;
  readonly entrypoint: readonly string[];
}

export const BUILTIN_IMAGES: readonly ImageEntry[] = [
  { repository: "connmeter/sidecar", entrypoint: ["node", "--max-semi-space-size=16", "dist/sidecar/main.js"] }, // as docker/Dockerfile
  { repository: "connmeter/operator", entrypoint: ["node", "dist/operator/main.js"] },
  { repository: "connmeter/demo-app", entrypoint: ["node", "dist/test/support/phoenix-server-main.js"] },
  { repository: "connmeter/node", entrypoint: ["node"] },
  { repository: "connmeter/host", entrypoint: [] },
];

/** The repository part of an image reference: no registry host, tag or digest. */
export function imageRepository(image: string): string {
  let ref = image.split("@")[0] ?? "";
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  if (colon > slash) ref = ref.slice(0, colon);
  const parts = ref.split("/");
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) parts.shift();
  if (parts[0] === "library") parts.shift();
  return parts.join("/");
}

function imageTable(): ImageEntry[] {
  const table = [...BUILTIN_IMAGES];
  const extra = process.env.CONNMETER_IMAGE_MAP;
  if (extra) {
    const parsed = JSON.parse(extra) as Record<string, unknown>;
    for (const [repository, entrypoint] of Object.entries(parsed)) {
      if (!Array.isArray(entrypoint) || !entrypoint.every((p) => typeof p === "string")) {
        throw new Error(`CONNMETER_IMAGE_MAP: "${repository}" must map to an array of strings`);
      }
      table.unshift({ repository, entrypoint: entrypoint as string[] });
    }
  }
  return table;
}

/** The entry for `image`, or undefined when the image is unknown. */
export function lookupImage(image: string): ImageEntry | undefined {
  const repo = imageRepository(image);
  return imageTable().find((e) => repo === e.repository || repo.endsWith(`/${e.repository}`) || repo === e.repository.replace("/", "-"));
}

/** Why an image cannot run here (unknown, or its build output is missing), or undefined if it can. */
export function imageProblem(image: string, repoRoot: string): { reason: string; message: string } | undefined {
  const entry = lookupImage(image);
  if (!entry) {
    const known = imageTable().map((e) => e.repository).join(", ");
    return {
      reason: "ErrImagePull",
      message: `image "${image}" is not known to the connmeter node agent (pods run as local processes): use one of ${known}, or add it to CONNMETER_IMAGE_MAP`,
    };
  }
  const script = entry.entrypoint.find((p) => p.endsWith(".js"));
  if (script && !existsSync(isAbsolute(script) ? script : join(repoRoot, script))) {
    return {
      reason: "ErrImagePull",
      message: `image "${image}" runs ${script}, which does not exist: run \`make build\` (the pod starts once it exists)`,
    };
  }
  return undefined;
}

/** The argv of a container: ENTRYPOINT/command + CMD/args, with `node` as this Node binary. */
export function containerArgv(entry: ImageEntry, command: readonly string[] | undefined, args: readonly string[] | undefined): string[] {
  const argv = command?.length ? [...command, ...(args ?? [])] : [...entry.entrypoint, ...(args ?? [])];
  if (argv[0] === "node") argv[0] = process.execPath;
  return argv;
}
