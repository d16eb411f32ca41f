# connmeter: every target installs what it needs, so a fresh machine only needs Node 20 and Go.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM_STAMP := node_modules/.package-lock.stamp

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP) ## install npm dependencies (npm ci)

build: $(NPM_STAMP) ## compile TypeScript into dist/
	npm run --silent build

typecheck: $(NPM_STAMP) ## type-check everything, tests included
	npm run --silent typecheck

lint: $(NPM_STAMP) ## eslint
	npm run --silent lint

test: build typecheck lint ## type-check, lint and run every test (unit, integration, e2e)
	npx vitest run

demo: build ## run the local demo: Phoenix test app + sidecar + the official phoenix client
	node dist/test/support/demo.js

bench: build ## benchmarks: direct vs sidecar vs nginx (installs nginx with apt-get if missing), then the frame reader vs ws
	bash bench/run.sh
	node dist/bench/frame-reader.bench.js

# The local Kubernetes control plane (test/env): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (built once by test/env/build-k8s.sh) and a node agent that runs pods as local
# processes. Only test/env is compiled here, so the cluster does not wait on the rest of the tree.
ENV_JS := dist/test/env/cluster-main.js
$(ENV_JS): $(NPM_STAMP) test/env/tsconfig.json $(shell find test/env -name '*.ts' ! -name '*.test.ts' 2>/dev/null)
	npx tsc -p test/env/tsconfig.json
	@touch $@

cluster-up: $(ENV_JS) ## start the local Kubernetes cluster (or reuse it); writes .local/kubeconfig
	node $(ENV_JS) up

cluster-down: $(ENV_JS) ## stop the local cluster started by cluster-up and remove its data
	node $(ENV_JS) down

clean: ## remove build output
	rm -rf dist

.PHONY: help deps build typecheck lint test demo bench clean cluster-up cluster-down
