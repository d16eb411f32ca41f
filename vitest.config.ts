import { defineConfig } from "vitest/config";

// Unit tests sit beside the code they test in test/unit; integration tests use real sockets
// on loopback; e2e tests need the local control plane (test/env) and run in their own project.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    pool: "forks",
  },
});
