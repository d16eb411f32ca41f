#!/usr/bin/env bash
# make bench: the sidecar benchmark (client → app direct vs through the sidecar vs through nginx).
# Installs nginx with apt-get when it is missing, builds if the build is stale, raises the
# open-files limit as far as allowed, then runs dist/bench/sidecar-bench.js. Everything listens
# on 127.0.0.1; every load loop stops by itself; every process started here is ended by the trap.
# Then the stall benchmark (bench/stall-bench.ts): the worst wait of other sockets and /healthz
# while one client sends a 1 GiB deflate bomb, and during 500 concurrent scrapes.
# Results: tables on stdout, bench/results/latest.json and stalls.json. Knobs: see the .ts files.
# `bench/run.sh scale` (make bench-scale) runs only bench/scale-bench.ts instead: 50,000 joined
# sockets through one sidecar (scaled down to the open-files limit), bench/results/scale.json.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[bench] $*"; }

install_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "bench: nginx is missing and apt-get is not available: install nginx and retry" >&2; exit 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "nginx not found: installing it with apt-get (nginx-light, else nginx)"
  # The package would start a system nginx on port 80; a policy-rc.d forbids that for the install.
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && added_policy=1
  fi
  say "apt-get update…"
  $sudo apt-get update -q 2>&1 | sed 's/^/[apt] /' | tail -n 3
  say "apt-get install nginx-light…"
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nginx-light 2>&1 | sed 's/^/[apt] /' | grep -E '^\[apt\] (Setting up|Unpacking|E:)' ; then :; fi
  if ! command -v nginx >/dev/null 2>&1; then
    say "nginx-light not installable: trying nginx"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nginx 2>&1 | sed 's/^/[apt] /' | grep -E '^\[apt\] (Setting up|Unpacking|E:)' || true
  fi
  [ -n "$added_policy" ] && $sudo rm -f "$policy"
  command -v nginx >/dev/null 2>&1 || { echo "bench: could not install nginx with apt-get" >&2; exit 1; }
  say "installed $(nginx -v 2>&1)"
}

build_if_stale() {
  local out=dist/bench/sidecar-bench.js
  if [ ! -f "$out" ] || [ -n "$(find bench sidecar test/support -name '*.ts' -newer "$out" -print -quit)" ]; then
    say "building (npm run build)…"
    [ -d node_modules ] || npm ci --no-audit --no-fund
    npm run --silent build
  fi
}

raise_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  if [ "$hard" != "unlimited" ] && [ "$hard" -lt 1048576 ]; then
    # Root may lift the hard limit where the sandbox allows it (CAP_SYS_RESOURCE); ignore if not.
    ulimit -Hn 1048576 2>/dev/null && hard=1048576 || true
  fi
  ulimit -Sn "$hard" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
  say "open-files limit: soft $(ulimit -Sn), hard $(ulimit -Hn) (10,000 proxied sockets need ~20,000 in the proxy)"
}

mode=${1:-all}
[ "$mode" = scale ] || install_nginx
build_if_stale
raise_fd_limit

WORK=$(mktemp -d "${TMPDIR:-/tmp}/connmeter-bench.XXXXXX")
export BENCH_TMP="$WORK" BENCH_PID_FILE="$WORK/pids"
: >"$BENCH_PID_FILE"
driver=""
end_listed() {
  local pid found=""
  [ -s "$BENCH_PID_FILE" ] || return 1
  while read -r pid; do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE "dist/(bench|sidecar|test/support)/|nginx"; then
      kill "-$1" "$pid" 2>/dev/null && found=1
    fi
  done <"$BENCH_PID_FILE"
  [ -n "$found" ]
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "$driver" ] && kill -TERM "$driver" 2>/dev/null && sleep 1
  # Anything the driver started and left (if it was killed hard): end those pids, and only
  # those, and only while they still run one of our programs (a pid may have been reused).
  end_listed TERM && sleep 1 && end_listed KILL
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$mode" = scale ]; then
  say "many sockets through one sidecar (BENCH_SCALE_HOLD_S=${BENCH_SCALE_HOLD_S:-300} s held; progress below)"
  node dist/bench/scale-bench.js &
  driver=$!
  wait "$driver"
  exit 0
fi
say "running the benchmark (about 3 minutes; progress below)"
node dist/bench/sidecar-bench.js &
driver=$!
wait "$driver"
say "worst stall of other sockets under a deflate bomb and a /metrics storm (about 30 s)"
node dist/bench/stall-bench.js &
driver=$!
wait "$driver"
