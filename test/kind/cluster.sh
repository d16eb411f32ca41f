#!/usr/bin/env bash
# cluster.sh up|down: the kind cluster of the kind e2e run (a control plane and 2 workers).
#   up:   engine (engine.sh up), node image (the official kindest/node when present locally or
#         CONNMETER_KIND_IMAGES=official, else built offline by node-image.sh), the kind network
#         and the cluster (reused when it runs), pod routes from the host, images loaded.
#         Writes the kubeconfig to $KUBECONFIG_KIND (printed on the last line of stdout).
#   down: deletes the cluster, its network and host routes, and stops dockerd if up started it.
source "$(dirname "$0")/lib.sh"
KIND=$KIND_BIN_DIR/kind
APP_VERSION=$(chart_app_version)
# :dev for the e2e suite, the chart's appVersion for `helm install` with its defaults (README's Quick start).
IMAGES=(connmeter/sidecar:dev connmeter/operator:dev connmeter/demo-app:dev connmeter/init:dev connmeter/sidecar:$APP_VERSION connmeter/operator:$APP_VERSION connmeter/demo-app:$APP_VERSION connmeter/init:$APP_VERSION)
ROUTES=$STATE/host-routes-$CLUSTER_NAME
NODE_BINS=""
mkdir -p "$STATE"

kctl() { "$NODE_BINS/kubectl" --kubeconfig "$KUBECONFIG_KIND" "$@"; }
nodes() { "$KIND" get nodes --name "$CLUSTER_NAME" 2>/dev/null; }
node_ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$KIND_NETWORK\").IPAddress}}" "$1"; }
cluster_exists() { "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; }

ensure_network() {
  local subnet
  if subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$KIND_NETWORK" 2>/dev/null); then
    [[ " $subnet " == *" $KIND_SUBNET "* ]] || die "docker network $KIND_NETWORK has subnet $subnet, not $KIND_SUBNET: remove it (make e2e-kind-down)"
    return
  fi
  log "cluster: docker network $KIND_NETWORK ($KIND_SUBNET)"
  docker network create --driver bridge --subnet "$KIND_SUBNET" --gateway "$KIND_GATEWAY" \
    -o com.docker.network.bridge.enable_ip_masquerade=true -o com.docker.network.driver.mtu=1500 \
    "$KIND_NETWORK" >/dev/null
}

# Static CNI for the offline node image (kindnetd is not available offline): a bridge with
# host-local addresses from the node's podCIDR, and a route on every node to every other
# node's podCIDR through that node's address on the kind network.
static_cni() {
  local n cidr ip other
  declare -A cidrs ips
  for n in $(nodes); do
    cidr=$(kctl get node "$n" -o jsonpath='{.spec.podCIDR}')
    [ -n "$cidr" ] || return 1
    cidrs[$n]=$cidr; ips[$n]=$(node_ip "$n")
  done
  for n in "${!cidrs[@]}"; do
    docker exec -i "$n" sh -c 'mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/10-connmeter.conflist.tmp && mv /etc/cni/net.d/10-connmeter.conflist.tmp /etc/cni/net.d/10-connmeter.conflist' <<JSON
{"cniVersion": "0.4.0", "name": "connmeter", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "${cidrs[$n]}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
    for other in "${!cidrs[@]}"; do
      [ "$other" = "$n" ] || docker exec "$n" ip route replace "${cidrs[$other]}" via "${ips[$other]}"
    done
  done
}

# Pod and Service addresses reachable from the host: a route per node's podCIDR via the node,
# and the Service range via the control plane (kube-proxy masquerades outside sources).
host_routes() {
  local n cidr ip
  : >"$ROUTES"
  for n in $(nodes); do
    cidr=$(kctl get node "$n" -o jsonpath='{.spec.podCIDR}'); ip=$(node_ip "$n")
    ip route replace "$cidr" via "$ip" && echo "$cidr" >>"$ROUTES"
    case $n in *control-plane) ip route replace "$SERVICE_SUBNET" via "$ip" && echo "$SERVICE_SUBNET" >>"$ROUTES" ;; esac
  done
  log "cluster: host routes to pods and Services: $(tr '\n' ' ' <"$ROUTES")"
}

up() {
  bash "$KIND_DIR/engine.sh" up
  # kind and kubectl (pinned, cached; built on first use).
  NODE_BINS=$(nice -n 10 bash "$KIND_DIR/build-node-bins.sh" | tail -1)
  local image offline=1 official=kindest/node:$K8S_VERSION
  if [ -n "${KIND_NODE_IMAGE:-}" ]; then image=$KIND_NODE_IMAGE; offline=0
  elif official_image "$official"; then image=$official; offline=0
  else
    image=$(bash "$KIND_DIR/node-image.sh" | tail -1)
  fi
  ensure_network
  local stopped=0 n
  for n in $(nodes); do [ "$(docker inspect -f '{{.State.Running}}' "$n")" = true ] || stopped=1; done
  if cluster_exists && [ $stopped = 0 ] && [ "$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null)" = "$image" ]; then
    log "cluster: reusing the running kind cluster $CLUSTER_NAME"
    "$KIND" export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_KIND" >/dev/null 2>&1
  else
    if cluster_exists; then
      # Stopped nodes (dockerd restarted) may come back on other addresses than their
      # certificates and kubeadm files name: a new cluster is quicker and sure.
      if [ $stopped = 1 ]; then log "cluster: $CLUSTER_NAME has stopped nodes (dockerd restarted): recreating it"
      else log "cluster: $CLUSTER_NAME runs another node image: recreating it"; fi
      "$KIND" delete cluster --name "$CLUSTER_NAME" >&2
    fi
    local patches="" start=$SECONDS
    if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
      log "cluster: cgroup v1 host: kubelet gets failCgroupV1: false (Kubernetes 1.35 refuses cgroup v1 otherwise)"
      patches+=$'\n- |\n  kind: KubeletConfiguration\n  failCgroupV1: false'
    fi
    if [ $offline = 1 ]; then
      local etcd_version; etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 v\([0-9.]*\).*#\1#p' "$REPO_ROOT/test/env/k8s/go.mod")
      patches+=$'\n- |\n  kind: ClusterConfiguration\n  etcd:\n    local:\n      imageTag: '"$etcd_version-0"
      patches+=$'\n- |\n  kind: KubeletConfiguration\n  resolvConf: /kind/pod-resolv.conf'
    fi
    cat >"$STATE/kind-config-$CLUSTER_NAME.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  apiServerAddress: 127.0.0.1
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
  disableDefaultCNI: $([ $offline = 1 ] && echo true || echo false)
nodes:
  - role: control-plane
    extraPortMappings:
      - {containerPort: 30401, hostPort: 30401, listenAddress: 127.0.0.1}
  - role: worker
  - role: worker
kubeadmConfigPatches:${patches:- []}
YAML
    log "cluster: kind create cluster $CLUSTER_NAME ($image, network $KIND_NETWORK, pods $POD_SUBNET, services $SERVICE_SUBNET)"
    KIND_EXPERIMENTAL_DOCKER_NETWORK=$KIND_NETWORK "$KIND" create cluster --name "$CLUSTER_NAME" --image "$image" \
      --config "$STATE/kind-config-$CLUSTER_NAME.yaml" --kubeconfig "$KUBECONFIG_KIND" >&2
    log "cluster: created in $((SECONDS - start)) s"
  fi
  if [ $offline = 1 ]; then
    for _ in $(seq 1 60); do static_cni && break; sleep 1; done || die "nodes got no podCIDR"
  fi
  host_routes
  # Pods may run on all 3 nodes, as on the local cluster (its e2e manifests spread 3 replicas
  # over the hostname topology with DoNotSchedule, and a tainted node still counts as a domain).
  kctl taint nodes "$CLUSTER_NAME-control-plane" node-role.kubernetes.io/control-plane:NoSchedule- >/dev/null 2>&1 || true
  kctl wait --for=condition=Ready nodes --all --timeout=180s >&2
  kctl -n kube-system rollout status deployment/coredns --timeout=180s >&2
  kctl -n kube-system rollout status daemonset/kube-proxy --timeout=180s >&2
  local start=$SECONDS
  "$KIND" load docker-image --name "$CLUSTER_NAME" "${IMAGES[@]}" >&2
  log "cluster: images loaded in $((SECONDS - start)) s: ${IMAGES[*]}"
  log "cluster: ready; to use it: export KUBECONFIG=$KUBECONFIG_KIND"
  echo "$KUBECONFIG_KIND"
}

down() {
  if [ -x "$KIND" ] && docker info >/dev/null 2>&1 && cluster_exists; then
    log "cluster: deleting kind cluster $CLUSTER_NAME"
    "$KIND" delete cluster --name "$CLUSTER_NAME" >&2
  fi
  if [ -f "$ROUTES" ]; then
    while read -r r; do ip route del "$r" 2>/dev/null || true; done <"$ROUTES"
    rm -f "$ROUTES"
  fi
  if docker network inspect "$KIND_NETWORK" >/dev/null 2>&1; then docker network rm "$KIND_NETWORK" >/dev/null; fi
  rm -f "$KUBECONFIG_KIND"
  bash "$KIND_DIR/engine.sh" down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
