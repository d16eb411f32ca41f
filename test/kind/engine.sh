#!/usr/bin/env bash
# engine.sh up|down: a Docker engine for the kind e2e run.
#   up:   uses the engine that answers `docker info`; otherwise installs Debian's docker.io
#         (apt-get) when dockerd is missing, and starts dockerd itself with its networks in
#         198.19.0.0/16, its data under the cache, and the VM workarounds it detects as needed.
#   down: stops dockerd only if `up` started it.
source "$(dirname "$0")/lib.sh"
ENGINE_STATE=$STATE/dockerd
PIDFILE=$ENGINE_STATE/dockerd.pid
OWNED=$ENGINE_STATE/started-by-connmeter

cap_in_bounding_set() { # $1 = capability number
  local bnd; bnd=$(sed -n 's/^CapBnd:\s*//p' /proc/self/status)
  (( (16#$bnd >> $1) & 1 ))
}

up() {
  if docker info >/dev/null 2>&1; then
    if [ -f "$OWNED" ]; then log "engine: reusing the dockerd started earlier (pid $(cat "$PIDFILE"))"
    else log "engine: using the Docker engine already running ($(docker info --format '{{.ServerVersion}}'))"; fi
    return
  fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and starting one needs root"
  if ! command -v dockerd >/dev/null; then
    command -v apt-get >/dev/null || die "no Docker engine and no apt-get to install one"
    log "engine: no Docker engine on this machine: installing docker.io from Debian (apt-get)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >&2
  fi
  mkdir -p "$ENGINE_STATE" "$CACHE/docker"
  local runtimes="" default_runtime=""
  if ! cap_in_bounding_set 24; then
    log "engine: CAP_SYS_RESOURCE is missing from this machine's capability bounding set, so runc cannot start --privileged containers: dockerd gets a runtime that drops it (test/kind/runc-drop-caps.sh)"
    install -m 0755 "$KIND_DIR/runc-drop-caps.sh" "$ENGINE_STATE/runc-drop-caps"
    runtimes=", \"runtimes\": {\"connmeter-runc\": {\"path\": \"$ENGINE_STATE/runc-drop-caps\"}}"
    default_runtime=', "default-runtime": "connmeter-runc"'
  fi
  cat >"$ENGINE_STATE/daemon.json" <<JSON
{
  "bip": "$DOCKER_BIP",
  "default-address-pools": [{"base": "$DOCKER_POOL", "size": 24}],
  "data-root": "$CACHE/docker",
  "exec-root": "$ENGINE_STATE/exec",
  "pidfile": "$PIDFILE",
  "hosts": ["unix:///var/run/docker.sock"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}$runtimes$default_runtime
}
JSON
  log "engine: starting dockerd (data in $CACHE/docker, docker0 at $DOCKER_BIP, log $ENGINE_STATE/dockerd.log)"
  # setsid: dockerd outlives this script (make e2e-kind-down stops it).
  setsid dockerd --config-file "$ENGINE_STATE/daemon.json" >>"$ENGINE_STATE/dockerd.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$OWNED"
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
      log "engine: dockerd $(docker info --format '{{.ServerVersion}}') ready (pid $pid)"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { tail -20 "$ENGINE_STATE/dockerd.log" >&2; rm -f "$OWNED"; die "dockerd exited"; }
    sleep 0.5
  done
  tail -20 "$ENGINE_STATE/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

down() {
  [ -f "$OWNED" ] || { log "engine: no dockerd started by these scripts is running (already stopped, or the engine is someone else's): nothing to stop"; return; }
  local pid; pid=$(cat "$OWNED")
  if kill -0 "$pid" 2>/dev/null; then
    log "engine: stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  # The default bridge it made (198.19.0.1/24) goes with it.
  ip link delete docker0 2>/dev/null || true
  rm -f "$OWNED"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
