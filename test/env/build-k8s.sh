#!/usr/bin/env bash
# Builds (once) the pinned Kubernetes control plane used by the local test cluster:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler, from the Go modules
# pinned in test/env/k8s/go.mod. Binaries are cached outside the repo, keyed by version,
# so only the first run pays for the build (about 15-25 minutes on 2 cores).
#
# Skipping the build: if CONNMETER_K8S_BIN (or KUBEBUILDER_ASSETS, as envtest lays it out)
# names a directory holding all four binaries, or all four are on PATH, they are used as is.
#
# Prints the directory holding the four binaries on its last line of stdout.
#
# The Kubernetes binaries carry their real version (ldflags, as hack/lib/version.sh sets them),
# so /version says v1.35.4 and tools that check the server version (kubectl skew warnings,
# Helm kubeVersion constraints) behave as against a release build. A cached build made
# without that stamp is relinked (the Go build cache makes this a link step only).
set -euo pipefail

NAMES=(etcd kube-apiserver kube-controller-manager kube-scheduler)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/k8s-version.sh"
cache=${CONNMETER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connmeter}
out=$cache/k8s-$K8S_VERSION

STAMP_NAME=.connmeter-build
STAMP="$K8S_VERSION ldflags-version=1"
has_all() { local d=$1 n; for n in "${NAMES[@]}"; do [ -x "$d/$n" ] || return 1; done; }
has_build() { has_all "$1" && [ "$(cat "$1/$STAMP_NAME" 2>/dev/null)" = "$STAMP" ]; }

for d in "${CONNMETER_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
  if [ -n "$d" ] && has_all "$d"; then echo "$d"; exit 0; fi
done
if on_path=$(command -v kube-apiserver 2>/dev/null) && has_all "$(dirname "$on_path")"; then
  dirname "$on_path"; exit 0
fi
if has_build "$out"; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-k8s: Go is required to build the control plane (or set CONNMETER_K8S_BIN to prebuilt binaries)" >&2; exit 1; }
# A partial build from an interrupted run is resumed only if it was made with the same flags.
if [ -d "$out.tmp" ] && [ "$(cat "$out.tmp/$STAMP_NAME.partial" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$out.tmp"
fi
mkdir -p "$out.tmp"
echo "$STAMP" >"$out.tmp/$STAMP_NAME.partial"
# An older cache without the stamp: keep etcd (its version is compiled in), relink the rest.
if has_all "$out" && [ ! -x "$out.tmp/etcd" ]; then cp "$out/etcd" "$out.tmp/etcd"; fi
cd "$here/k8s"
version_ldflags=$(k8s_version_ldflags)
pkgs=(
  "etcd=go.etcd.io/etcd/server/v3"
  "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
)
echo "build-k8s: building Kubernetes $K8S_VERSION control plane into $out (first run only)" >&2
i=0
for p in "${pkgs[@]}"; do
  i=$((i + 1)); name=${p%%=*}; pkg=${p#*=}
  if [ -x "$out.tmp/$name" ]; then continue; fi
  start=$SECONDS
  echo "build-k8s: [$i/${#pkgs[@]}] go build $pkg ..." >&2
  # -trimpath and no DWARF keep the binaries small; CGO off matches upstream release builds.
  ldflags="-s -w"
  case $name in kube-*) ldflags+=$version_ldflags ;; esac
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags="$ldflags" -o "$out.tmp/$name.partial" "$pkg" >&2
  mv "$out.tmp/$name.partial" "$out.tmp/$name"
  echo "build-k8s: [$i/${#pkgs[@]}] $name built in $((SECONDS - start))s" >&2
done
mv "$out.tmp/$STAMP_NAME.partial" "$out.tmp/$STAMP_NAME"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
