#!/usr/bin/env bash
# `make e2e-kind`: the e2e suite `make test` runs, against a kind cluster.
#   1. a Docker engine (engine.sh: the running one, or Debian's dockerd started here);
#   2. connmeter/{sidecar,operator,demo-app}:dev (images.sh, docker/Dockerfile);
#   3. the kind cluster, created or reused, images loaded (cluster.sh);
#   4. vitest's e2e project with CONNMETER_E2E_CLUSTER=kind.
# Everything downloaded or built is cached under ~/.cache/connmeter, keyed by version.
# `make e2e-kind-down` removes the cluster and stops what this started.
source "$(dirname "$0")/lib.sh"
t0=$SECONDS
mark() { log "timing: $1 at $((SECONDS - t0)) s"; }
mkdir -p "$STATE"
bash "$KIND_DIR/engine.sh" up
mark "engine ready"
# Helm for the chart's e2e test, pinned by the Makefile's helm target where it has one.
if grep -q '^helm:' "$REPO_ROOT/Makefile"; then make -s -C "$REPO_ROOT" helm >&2; fi
bash "$KIND_DIR/images.sh"
mark "images built"
kubeconfig=$(bash "$KIND_DIR/cluster.sh" up | tail -1)
mark "cluster ready"
cd "$REPO_ROOT"
export CONNMETER_E2E_CLUSTER=kind CONNMETER_KIND_KUBECONFIG=$kubeconfig
# kubectl v1.35 (pinned, built with the node binaries) for the tests that call it.
PATH=$(bash "$KIND_DIR/build-node-bins.sh" | tail -1):$PATH
export PATH
status=0
npx vitest run --project e2e "$@" || status=$?
mark "e2e suite done (exit $status)"
exit $status
