# Sourced by test/env/build-k8s.sh and test/kind/build-node-bins.sh: the pinned Kubernetes
# version (that of test/env/k8s/go.mod) and the -X flags that stamp it into the binaries, as
# hack/lib/version.sh does for release builds, so /version and `kubectl version` tell the truth.
K8S_VERSION=v1.35.4

# Prints the ldflags (each " -X pkg.key=value") for $K8S_VERSION.
k8s_version_ldflags() {
  local major minor build_date key_val pkg out=""
  major=${K8S_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
  build_date=$(date -u ${SOURCE_DATE_EPOCH:+--date=@$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ)
  for key_val in "gitVersion=$K8S_VERSION" "gitMajor=$major" "gitMinor=$minor" \
      "gitTreeState=clean" "buildDate=$build_date"; do
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      out+=" -X $pkg.$key_val"
    done
  done
  printf '%s' "$out"
}
