// Lint: typescript-eslint's recommended rules with type information (projectService: each file
// is checked with the tsconfig that includes it), plus the few habits STYLE.md asks for.
import tseslint from "typescript-eslint";

const KUBERNETES_ONLY_IN_K8S = {
  group: ["@kubernetes/client-node"],
  message: "Only operator/k8s/ and the cluster tests (test/env/, test/e2e/, test/soak/) may import @kubernetes/client-node.",
};
// The operator and the sidecar share the admin API through one module (and the flag parser, and
// the Node version check both main.ts run first);
// anything else of sidecar/ stays the sidecar's own, free to change.
const OPERATOR_SIDECAR_CONTRACT_ONLY = {
  regex: "(^|/)sidecar/(?!admin/contract\\.js$|cli-flags\\.js$|require-node\\.js$)",
  message: "The operator may import only sidecar/admin/contract.js (the admin API) sidecar/cli-flags.js and sidecar/require-node.js from sidecar/: put what both sides need in the contract.",
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".local/", "coverage/", "eslint.config.js"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-restricted-imports": ["error", { patterns: [KUBERNETES_ONLY_IN_K8S] }],
    },
  },
  {
    // Stylistic and autofixable; it would touch files being rewritten concurrently (the
    // reconciler, the phoenix scanner, test/env). Turn on with `eslint --fix` once they land.
    rules: { "@typescript-eslint/no-unnecessary-type-assertion": "off" },
  },
  {
    // Tests and benchmarks: fakes implement async interfaces without awaiting, vitest's
    // asymmetric matchers (expect.any) are typed any, `expect(obj.method)` passes methods
    // unbound, and fakes of client-node throw its non-Error objects. The promise rules stay on.
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/unbound-method": "off",
      "@typescript-eslint/only-throw-error": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
    },
  },
  {
    files: ["operator/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [KUBERNETES_ONLY_IN_K8S, OPERATOR_SIDECAR_CONTRACT_ONLY] }] },
  },
  {
    files: ["operator/k8s/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [OPERATOR_SIDECAR_CONTRACT_ONLY] }] },
  },
  {
    files: ["test/env/**/*.ts", "test/e2e/**/*.ts", "test/soak/**/*.ts"],
    rules: { "no-restricted-imports": "off" },
  },
);
