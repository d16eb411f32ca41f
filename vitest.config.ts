import { configDefaults, defineConfig } from "vitest/config";

// Unit tests sit beside the code they test in test/unit; integration tests use real sockets
// on loopback; e2e tests need the local control plane (test/env) and run in their own project:
//   npx vitest run --project unit     unit + integration (no cluster)
//   npx vitest run --project e2e      starts the local cluster (or reuses `make cluster-up`'s)
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, "test/e2e/**"],
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: ["test/env/global-setup.ts"],
          // One shared cluster on a small machine: files run one after another.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
