#!/usr/bin/env bash
# The main job, until the namespace-host cluster arrives (issue 4):
#   bash deploy/demo.sh up [N]   build, start N swarmd on loopback, init + join
#   bash deploy/demo.sh status   swarmctl node ls
#   bash deploy/demo.sh down     stop what `up` started (by PID) and remove its state
# Daemons run detached (setsid) with logs in $DEMO_DIR/node*.log.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEMO_DIR="${DEMO_DIR:-/tmp/swarmlet-demo}"
BIN="$ROOT/target/release"
BASE_PORT="${BASE_PORT:-14240}"

ctl() { "$BIN/swarmctl" -H "unix://$DEMO_DIR/node$1.sock" "${@:2}"; }

wait_for_socket() {
  for _ in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  echo "demo: $1 did not appear" >&2; return 1
}

up() {
  local n="${1:-3}"
  bash "$ROOT/deploy/setup.sh"
  (cd "$ROOT" && cargo build --release --quiet)
  down quiet
  mkdir -p "$DEMO_DIR"
  for i in $(seq 1 "$n"); do
    setsid "$BIN/swarmd" --state-dir "$DEMO_DIR/node$i" --control-socket "$DEMO_DIR/node$i.sock" \
      --listen-addr "127.0.0.1:$((BASE_PORT + i))" --hostname "node$i" \
      >"$DEMO_DIR/node$i.log" 2>&1 < /dev/null &
    echo $! > "$DEMO_DIR/node$i.pid"
    wait_for_socket "$DEMO_DIR/node$i.sock"
  done
  ctl 1 cluster init
  local mtoken wtoken
  mtoken=$(ctl 1 cluster join-token manager -q)
  wtoken=$(ctl 1 cluster join-token worker -q)
  for i in $(seq 2 "$n"); do
    # Nodes 2 and 3 join as managers (three managers tolerate one failure), the rest as workers.
    if [ "$i" -le 3 ]; then tok="$mtoken"; else tok="$wtoken"; fi
    ctl "$i" node join --token "$tok" "127.0.0.1:$((BASE_PORT + 1))"
  done
  status
}

status() {
  ctl 1 node ls
}

down() {
  [ -d "$DEMO_DIR" ] || return 0
  for pidfile in "$DEMO_DIR"/node*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null && grep -q swarmd "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  rm -rf "$DEMO_DIR"
  [ "${1:-}" = quiet ] || echo "demo: stopped and removed $DEMO_DIR"
}

case "${1:-up}" in
  up) up "${2:-3}" ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up [N] | status | down" >&2; exit 2 ;;
esac
