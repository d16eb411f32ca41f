# Shared settings of the kind e2e scripts (sourced). Every network they create lives in
# 198.19.0.0/16, the upper half of RFC 2544's 198.18.0.0/15 test range; the lower half,
# 198.18.0.0/16, belongs to the local process cluster's pods (test/env).
# shellcheck shell=bash
set -euo pipefail

# dockerd, iptables and debootstrap live in sbin directories, which a PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin ;; esac
KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$KIND_DIR/../.." && pwd)
CACHE=${CONNMETER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connmeter}
# shellcheck source=/dev/null
source "$REPO_ROOT/test/env/k8s-version.sh"
KIND_VERSION=${KIND_VERSION:-v0.33.0}
NODE_VERSION=$(sed -n 's/^NODE_VERSION := //p' "$REPO_ROOT/Makefile")
CLUSTER_NAME=${CONNMETER_KIND_CLUSTER:-connmeter}
KIND_NETWORK=${CONNMETER_KIND_NETWORK:-connmeter-kind}
# Addresses (all inside 198.19.0.0/16).
DOCKER_BIP=198.19.0.1/24              # docker0, the default bridge
DOCKER_POOL=198.19.16.0/20            # default-address-pools for other networks (/24 each)
KIND_SUBNET=198.19.1.0/24             # the kind nodes' network
KIND_GATEWAY=198.19.1.1
POD_SUBNET=198.19.128.0/17            # pods: a /24 per node
SERVICE_SUBNET=198.19.96.0/20         # Services (kube-dns at .10)
# State of what these scripts started (dockerd), outside the repo.
STATE=$CACHE/kind-state
KIND_BIN_DIR=$CACHE/kind-$KIND_VERSION
KUBECONFIG_KIND=$STATE/kubeconfig-$CLUSTER_NAME

log() { echo "kind-e2e: $*" >&2; }
die() { echo "kind-e2e: error: $*" >&2; exit 1; }

# Whether the official image $1 is there to use: present locally, or pulled now. The modes of
# CONNMETER_KIND_IMAGES: auto (default) tries one pull and says in one line why it falls back to
# building offline; official requires the pull; offline never pulls.
official_image() {
  local image=$1 mode=${CONNMETER_KIND_IMAGES:-auto} err
  case $mode in auto | official | offline) ;; *) die "CONNMETER_KIND_IMAGES=$mode: expected auto, official or offline" ;; esac
  [ "$mode" = offline ] && return 1
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  log "images: pulling $image"
  if err=$(docker pull -q "$image" 2>&1 >/dev/null); then return 0; fi
  err=${err##*$'\n'}
  [ "$mode" = official ] && die "CONNMETER_KIND_IMAGES=official: \`docker pull $image\` failed: $err"
  log "images: cannot pull $image ($err): building an equivalent offline instead (CONNMETER_KIND_IMAGES=offline skips the pull)"
  return 1
}

# The chart's appVersion: the image tag `helm install` uses by default.
chart_app_version() {
  sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO_ROOT/charts/connmeter/Chart.yaml"
}
