#!/usr/bin/env bash
# Builds (once) what a kind node runs besides the control plane test/env already builds:
# kubelet, kubeadm, kubectl and kube-proxy from the same pinned Kubernetes modules
# (test/env/k8s/go.mod), coredns at the version kubeadm v1.35 deploys, and kind itself.
# Cached outside the repo, keyed by version; later runs print the directory and exit.
# Heavy (kubelet and kubeadm are large): run with `nice`, the machine is shared.
#
# The module file is copied into the cache so the repo's go.mod/go.sum never change.
# Prints the directory holding the binaries on its last line of stdout.
set -euo pipefail

KIND_VERSION=${KIND_VERSION:-v0.33.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.13.1}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/../env/k8s-version.sh"
cache=${CONNMETER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connmeter}
out=$cache/kind-node-bins-$K8S_VERSION-coredns-$COREDNS_VERSION
kind_out=$cache/kind-$KIND_VERSION
NAMES=(kubelet kubeadm kubectl kube-proxy coredns)

has_all() { local n; for n in "${NAMES[@]}"; do [ -x "$out/$n" ] || return 1; done; }
log() { echo "build-node-bins: $*" >&2; }

# kind, pinned (go install into its own cache directory).
if [ ! -x "$kind_out/kind" ]; then
  log "go install sigs.k8s.io/kind@$KIND_VERSION"
  GOBIN=$kind_out.tmp CGO_ENABLED=0 go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kind@$KIND_VERSION" >&2
  rm -rf "$kind_out" && mv "$kind_out.tmp" "$kind_out"
fi

if has_all; then echo "$out"; exit 0; fi
command -v go >/dev/null || { log "Go is required"; exit 1; }
mkdir -p "$out.tmp" "$cache/kind-node-mod"
# A private copy of the pinned module: building kubelet may add requirements to go.mod.
cp "$here/../env/k8s/go.mod" "$here/../env/k8s/go.sum" "$cache/kind-node-mod/"
printf '//go:build tools\n\npackage tools\n' >"$cache/kind-node-mod/tools.go"
version_ldflags=$(k8s_version_ldflags)
cd "$cache/kind-node-mod"
for name in kubelet kubeadm kubectl kube-proxy; do
  [ -x "$out.tmp/$name" ] && continue
  start=$SECONDS
  log "go build k8s.io/kubernetes/cmd/$name ($K8S_VERSION) ..."
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags="-s -w$version_ldflags" -o "$out.tmp/$name.partial" "k8s.io/kubernetes/cmd/$name" >&2
  mv "$out.tmp/$name.partial" "$out.tmp/$name"
  log "$name built in $((SECONDS - start))s"
done
if [ ! -x "$out.tmp/coredns" ]; then
  start=$SECONDS
  log "go install github.com/coredns/coredns@$COREDNS_VERSION ..."
  GOBIN=$out.tmp/gobin CGO_ENABLED=0 go install -trimpath -ldflags="-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" >&2
  mv "$out.tmp/gobin/coredns" "$out.tmp/coredns" && rmdir "$out.tmp/gobin"
  log "coredns built in $((SECONDS - start))s"
fi
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
