#!/usr/bin/env bash
# A multi-host Swarmlet cluster on one machine: every host is a network
# namespace on an underlay bridge, with its own swarmd (state dir, control
# socket, advertise address); all share this machine's Docker daemon.
#
#   deploy/cluster.sh up [N]      build, start dockerd if needed, build the demo
#                                 image, create N hosts, init on h1, join the rest
#                                 (h2 … h$MANAGERS as managers, others as workers)
#   deploy/cluster.sh demo        create the demo service (3 replicas of swarmlet-demo)
#   deploy/cluster.sh status      swarmctl node ls and service ls
#   deploy/cluster.sh ctl H ARGS  run swarmctl against host H (e.g. ctl 2 node ls)
#   deploy/cluster.sh kill H      SIGKILL host H's swarmd (a crashed host)
#   deploy/cluster.sh start H     start host H's swarmd again (same state)
#   deploy/cluster.sh down        remove everything `up` made, also after a crash
#
# Environment: CLUSTER_DIR (default /tmp/swarmlet-cluster), PREFIX (default swl;
# names of namespaces and interfaces), SUBNET (default 10.210.0), NO_BUILD=1,
# MANAGERS (default 3: h1, h2 and h3 are managers).
# Only traffic between these namespaces is involved; nothing leaves the machine.
#
# The underlay is a bridge in a namespace of its own (`${PREFIX}-sw`, the
# "switch"), not in this machine's namespace: there Docker's iptables rules
# and connection tracking would see every frame between hosts
# (br_netfilter), which a physical switch does not do.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/swarmlet-cluster}"
PREFIX="${PREFIX:-swl}"
SUBNET="${SUBNET:-10.210.0}"
SWITCH="${PREFIX}-sw"
BRIDGE=br0
PORT=4242

host_ip() { echo "$SUBNET.$((10 + $1))"; }
ns() { echo "${PREFIX}-h$1"; }
sock() { echo "$CLUSTER_DIR/h$1.sock"; }
ctl() { "$BIN/swarmctl" -H "unix://$(sock "$1")" "${@:2}"; }

log() { echo "cluster: $*" >&2; }

wait_for_socket() {
  for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  log "$1 did not appear"; return 1
}

make_underlay() {
  ip netns add "$SWITCH"
  ip -n "$SWITCH" link set lo up
  ip -n "$SWITCH" link add "$BRIDGE" type bridge
  ip -n "$SWITCH" addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip -n "$SWITCH" link set "$BRIDGE" up
  # A switch forwards frames; it does not filter them (the default in a new
  # namespace is to hand bridged IPv4 to netfilter when br_netfilter is loaded).
  if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    ip netns exec "$SWITCH" sysctl -qw net.bridge.bridge-nf-call-iptables=0
  fi
}

make_host() {
  local i=$1 n; n=$(ns "$i")
  ip netns add "$n"
  ip -n "$SWITCH" link add "v$i" type veth peer name eth0 netns "$n"
  ip -n "$SWITCH" link set "v$i" master "$BRIDGE" up
  ip -n "$n" addr add "$(host_ip "$i")/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" link set lo up
  ip -n "$n" route add default via "$SUBNET.1"
  mkdir -p "$CLUSTER_DIR/h$i"
}

start_host() {
  local i=$1
  rm -f "$(sock "$i")"
  # nsenter, not `ip netns exec`: swarmd must stay in this machine's mount
  # namespace so that the overlay namespaces it mounts under /run/netns
  # show in `ip netns ls` (a real host runs swarmd in its own namespaces).
  SWARMD_NO_PULL=1 setsid nsenter --net="/run/netns/$(ns "$i")" "$BIN/swarmd" \
    --state-dir "$CLUSTER_DIR/h$i" --control-socket "$(sock "$i")" \
    --listen-addr "0.0.0.0:$PORT" --advertise-addr "$(host_ip "$i"):$PORT" \
    --hostname "h$i" ${SWARMD_ARGS:-} \
    >>"$CLUSTER_DIR/h$i.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/h$i.pid"
  wait_for_socket "$(sock "$i")"
}

stop_host() {
  local i=$1 sig=${2:-TERM} pidfile="$CLUSTER_DIR/h$1.pid" pid
  [ -e "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -q swarmd "/proc/$pid/cmdline" 2>/dev/null; then
    kill "-$sig" "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

up() {
  local n="${1:-3}"
  bash "$ROOT/deploy/setup.sh"
  [ "${NO_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release --quiet -p swarmd -p swarmctl)
  # Tab completion for swarmctl (not for the test suite's clusters).
  [ "${NO_BUILD:-0}" = 1 ] || bash "$ROOT/deploy/install.sh" --completion-only --bin-dir "$BIN"
  bash "$ROOT/deploy/dockerd.sh"
  bash "$ROOT/deploy/image.sh"
  down quiet
  mkdir -p "$CLUSTER_DIR"
  echo "$n" >"$CLUSTER_DIR/hosts"
  make_underlay
  for i in $(seq 1 "$n"); do make_host "$i"; start_host "$i"; done
  ctl 1 cluster init --advertise-addr "$(host_ip 1):$PORT" >/dev/null
  local mtoken wtoken tok
  mtoken=$(ctl 1 cluster join-token manager -q)
  wtoken=$(ctl 1 cluster join-token worker -q)
  for i in $(seq 2 "$n"); do
    if [ "$i" -le "${MANAGERS:-3}" ]; then tok="$mtoken"; else tok="$wtoken"; fi
    ctl "$i" node join --token "$tok" "$(host_ip 1):$PORT" >/dev/null
  done
  for _ in $(seq 1 100); do
    [ "$(ctl 1 node ls --format json | grep -o '"status":"ready"' | wc -l)" -ge "$n" ] && break
    sleep 0.1
  done
  log "$n hosts up ($(host_ip 1) … $(host_ip "$n")); swarmctl -H unix://$(sock 1) …"
  status
}

demo() {
  ctl 1 service create --name demo --replicas 3 --publish 8080:80 swarmlet-demo:latest
}

status() {
  ctl 1 node ls
  ctl 1 service ls
}

down() {
  [ -d "$CLUSTER_DIR" ] || { remove_network; return 0; }
  local n=0
  [ -e "$CLUSTER_DIR/hosts" ] && n=$(cat "$CLUSTER_DIR/hosts")
  for i in $(seq 1 "$n"); do stop_host "$i"; done
  # Containers of this cluster's nodes (swarmd leaves them running on exit).
  if docker version >/dev/null 2>&1; then
    for state in "$CLUSTER_DIR"/h*/node.json; do
      [ -e "$state" ] || continue
      id=$(grep -o '"node_id": *"[^"]*"' "$state" | sed 's/.*"\([^"]*\)"$/\1/')
      [ -n "$id" ] || continue
      ids=$(docker ps -aq --filter "label=com.swarmlet.node.id=$id")
      [ -z "$ids" ] || docker rm -f $ids >/dev/null
    done
  fi
  # The nodes' overlay namespaces (swarmd keeps them while containers run).
  for state in "$CLUSTER_DIR"/h*/node.json; do
    [ -e "$state" ] || continue
    id=$(grep -o '"node_id": *"[^"]*"' "$state" | sed 's/.*"\([^"]*\)"$/\1/')
    [ -n "$id" ] || continue
    for o in $(ip netns ls | awk '{print $1}' | grep -E "^(ovl-${id:0:8}-|ingress_sbox-${id:0:8}$)" || true); do
      ip netns del "$o" 2>/dev/null || true
    done
    # Its secret files (tmpfs), should a task's still be there.
    rm -rf "/dev/shm/swarmlet-${id:0:12}"
  done
  remove_network
  rm -rf "$CLUSTER_DIR"
  [ "${1:-}" = quiet ] || log "removed"
}

remove_network() {
  # Deleting a namespace deletes its ends of the veths, and so the pairs.
  for h in $(ip netns ls | awk '{print $1}' | grep "^${PREFIX}-h[0-9]*$" || true); do
    ip netns del "$h"
  done
  if ip netns ls | awk '{print $1}' | grep -qx "$SWITCH"; then
    ip netns del "$SWITCH"
  fi
}

case "${1:-up}" in
  up) up "${2:-3}" ;;
  demo) demo ;;
  status) status ;;
  ctl) shift; h=$1; shift; ctl "$h" "$@" ;;
  kill) stop_host "$2" KILL ;;
  start) start_host "$2" ;;
  stop) stop_host "$2" ;;
  down) down ;;
  *) echo "usage: $0 up [N] | demo | status | ctl H ARGS | kill H | start H | stop H | down" >&2; exit 2 ;;
esac
