#!/usr/bin/env bash
# The kind node image, built offline (`kind build node-image` fetches images with ctr and cannot
# work where nothing can be pulled). Same parts as kind's own image, from local sources:
#   - base: Debian (debootstrap) + systemd, containerd, runc, CNI plugins from Debian's packages;
#   - kubelet, kubeadm, kubectl, kube-proxy: built from the pinned modules (build-node-bins.sh);
#   - control plane images: the binaries test/env/build-k8s.sh builds for the local cluster;
#   - coredns (go install at the version kubeadm deploys) and pause (build/pause of the pinned
#     Kubernetes module, compiled statically): images tagged as kubeadm expects them,
#     imported into the node's containerd without unpacking, then `docker commit`.
# Cached as a Docker image keyed by the Kubernetes version and a hash of this recipe.
# Prints the image name on its last line of stdout.
source "$(dirname "$0")/lib.sh"
COREDNS_VERSION=v1.13.1     # kubeadm v1.35 constants.CoreDNSVersion
PAUSE_VERSION=3.10.1        # kubeadm v1.35 constants.PauseVersion
recipe=$(cat "$KIND_DIR/node-image.sh" "$KIND_DIR/build-node-bins.sh" "$KIND_DIR/node-image/Dockerfile.base" \
  "$KIND_DIR"/node-image/files/* | sha256sum | cut -c1-12)
IMAGE=connmeter/kind-node:$K8S_VERSION-$recipe
has_image() { docker image inspect "$1" >/dev/null 2>&1; }
if has_image "$IMAGE"; then echo "$IMAGE"; exit 0; fi

log "node image: building $IMAGE offline (first run of this recipe only)"
bash "$KIND_DIR/base-images.sh" >/dev/null
DEBIAN_IMAGE=connmeter/debian:bookworm-minbase
bins=$(nice -n 10 bash "$KIND_DIR/build-node-bins.sh" | tail -1)
cp_bins=$(nice -n 10 bash "$REPO_ROOT/test/env/build-k8s.sh" | tail -1)
etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 v\([0-9.]*\).*#\1#p' "$REPO_ROOT/test/env/k8s/go.mod")
[ -n "$etcd_version" ] || die "etcd version not found in test/env/k8s/go.mod"
work=$CACHE/kind-node-build
rm -rf "$work" && mkdir -p "$work"

# 1. Base (cached separately: apt-get is the slow part).
base=connmeter/kind-node-base:bookworm-$(sha256sum "$KIND_DIR/node-image/Dockerfile.base" | cut -c1-12)
if ! has_image "$base"; then
  log "node image: base $base (apt-get in a container)"
  docker build -q --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$base" -f "$KIND_DIR/node-image/Dockerfile.base" "$KIND_DIR/node-image" >/dev/null
fi

# 2. Images kubeadm and the kubelet run, named as kubeadm names them.
component() { # name image-ref from-image [dockerfile lines...]
  local name=$1 ref=$2 from=$3; shift 3
  mkdir -p "$work/$name"
  { echo "FROM $from"; printf '%s\n' "$@"; } >"$work/$name/Dockerfile"
  docker build -q -t "$ref" "$work/$name" >/dev/null
  component_refs+=("$ref")
}
component_refs=()
for n in kube-apiserver kube-controller-manager kube-scheduler; do
  mkdir -p "$work/$n" && cp "$cp_bins/$n" "$work/$n/"
  component "$n" "registry.k8s.io/$n:$K8S_VERSION" scratch "ENV PATH=/usr/local/bin" "COPY $n /usr/local/bin/$n"
done
mkdir -p "$work/etcd" && cp "$cp_bins/etcd" "$work/etcd/"
component etcd "registry.k8s.io/etcd:$etcd_version-0" scratch "ENV PATH=/usr/local/bin" "COPY etcd /usr/local/bin/etcd"
mkdir -p "$work/kube-proxy" && cp "$bins/kube-proxy" "$work/kube-proxy/"
component kube-proxy "registry.k8s.io/kube-proxy:$K8S_VERSION" "$DEBIAN_IMAGE" \
  "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables conntrack ipset kmod && apt-get clean && rm -rf /var/lib/apt/lists/*" \
  "COPY kube-proxy /usr/local/bin/kube-proxy"
mkdir -p "$work/coredns" && cp "$bins/coredns" "$work/coredns/"
component coredns "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" scratch "COPY coredns /coredns" 'ENTRYPOINT ["/coredns"]'
pause_src=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
[ -f "$pause_src" ] || (cd "$REPO_ROOT/test/env/k8s" && go mod download k8s.io/kubernetes)
mkdir -p "$work/pause"
gcc -Os -Wall -static -DVERSION="v$PAUSE_VERSION-connmeter" -o "$work/pause/pause" "$pause_src"
component pause "registry.k8s.io/pause:$PAUSE_VERSION" scratch "COPY pause /pause" "USER 65535:65535" 'ENTRYPOINT ["/pause"]'
docker save -o "$work/images.tar" "${component_refs[@]}"

# 3. Node filesystem.
mkdir -p "$work/node/files" && cp "$KIND_DIR"/node-image/files/* "$work/node/files/"
cp "$bins/kubelet" "$bins/kubeadm" "$bins/kubectl" "$work/node/"
sed -i "s/@PAUSE_VERSION@/$PAUSE_VERSION/" "$work/node/files/containerd-config.toml"
cat >"$work/node/Dockerfile" <<DOCKERFILE
FROM $base
COPY kubelet kubeadm kubectl /usr/bin/
COPY files/entrypoint /usr/local/bin/entrypoint
COPY files/containerd-config.toml /etc/containerd/config.toml
COPY files/kubelet.service files/kubelet.slice /etc/systemd/system/
COPY files/default-storage.yaml /kind/manifests/default-storage.yaml
RUN chmod 0755 /usr/local/bin/entrypoint && systemctl enable kubelet.service \
 && echo "$K8S_VERSION" >/kind/version \
 && printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >/etc/crictl.yaml
DOCKERFILE
stage=connmeter/kind-node-stage:$recipe
docker build -q -t "$stage" "$work/node" >/dev/null

# 4. Import the images into the node's containerd (content only; the node unpacks on use).
docker rm -f connmeter-kind-node-build >/dev/null 2>&1 || true
docker run --name connmeter-kind-node-build --privileged -v "$work/images.tar:/images.tar:ro" \
  --entrypoint /bin/bash "$stage" -c '
    containerd >/tmp/containerd.log 2>&1 & pid=$!
    for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
    ctr -n k8s.io images import --no-unpack --all-platforms /images.tar
    ctr -n k8s.io images ls -q
    kill $pid; wait $pid || true' >&2 || die "importing the images into the node failed"
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
  connmeter-kind-node-build "$IMAGE" >/dev/null
docker rm -f connmeter-kind-node-build >/dev/null
docker rmi "$stage" >/dev/null 2>&1 || true
for r in "${component_refs[@]}"; do docker rmi "$r" >/dev/null 2>&1 || true; done
rm -rf "$work"
# Older recipes' node images (a running cluster's image stays: docker refuses to remove it).
for old in $(docker images connmeter/kind-node --format '{{.Repository}}:{{.Tag}}'); do
  [ "$old" = "$IMAGE" ] || docker rmi "$old" >/dev/null 2>&1 || true
done
log "node image: $IMAGE ready ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$IMAGE"
