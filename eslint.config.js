// Lint: typescript-eslint's recommended type-aware rules, plus the few habits STYLE.md asks for.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".local/", "coverage/"] },
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["@kubernetes/client-node"], message: "Only operator/k8s/ and the cluster tests (test/env/, test/e2e/, test/soak/) may import @kubernetes/client-node." }] },
      ],
    },
  },
  {
    files: ["operator/k8s/**/*.ts", "test/env/**/*.ts", "test/e2e/**/*.ts", "test/soak/**/*.ts"],
    rules: { "no-restricted-imports": "off" },
  },
);
