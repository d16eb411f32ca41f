#!/usr/bin/env bash
# Builds connmeter/sidecar, connmeter/operator, connmeter/demo-app and connmeter/init (tag $IMAGE_TAG, default
# dev, and the chart's appVersion, the tag the chart and its sidecar snippet default to) from
# docker/Dockerfile. The Node base: $NODE_IMAGE when set; else the official
# node:24-bookworm-slim when present or pulled (official_image in lib.sh); else an equivalent
# built offline (test/kind/base-images.sh).
source "$(dirname "$0")/lib.sh"
IMAGE_TAG=${IMAGE_TAG:-dev}
APP_VERSION=$(chart_app_version)
OFFICIAL_NODE_IMAGE=node:24-bookworm-slim
if [ -n "${NODE_IMAGE:-}" ]; then
  base=$NODE_IMAGE
elif official_image "$OFFICIAL_NODE_IMAGE"; then
  base=$OFFICIAL_NODE_IMAGE
else
  base=$(bash "$KIND_DIR/base-images.sh" | tail -1)
fi
# npm inside the build trusts the CAs this machine added to its trust store (Debian keeps them
# in /usr/local/share/ca-certificates; a TLS-intercepting proxy's CA lives there), or the PEM
# file $CONNMETER_EXTRA_CA_FILE.
ca_args=()
extra_ca=$(cat "${CONNMETER_EXTRA_CA_FILE:-/dev/null}" /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
[ -n "$extra_ca" ] && ca_args=(--build-arg "EXTRA_CA_CERTS=$extra_ca")
for target in sidecar operator demo-app init; do
  start=$SECONDS
  docker build -q -f "$REPO_ROOT/docker/Dockerfile" --target "$target" \
    --build-arg "NODE_IMAGE=$base" "${ca_args[@]}" -t "connmeter/$target:$IMAGE_TAG" -t "connmeter/$target:$APP_VERSION" "$REPO_ROOT" >/dev/null 2>"$STATE/build-$target.log" \
    || { cat "$STATE/build-$target.log" >&2; die "docker build --target $target failed"; }
  log "images: connmeter/$target:$IMAGE_TAG (also :$APP_VERSION) built on $base in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "connmeter/$target:$IMAGE_TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
done
# Older builds' untagged images pile up (335-506 MB each) on the dockerd this project runs;
# those of the last 2 hours stay as the layer cache of the next build.
if [ -f "$STATE/dockerd/started-by-connmeter" ]; then
  docker image prune -f --filter until=2h >/dev/null 2>&1 || true
fi
