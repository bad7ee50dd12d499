#!/usr/bin/env bash
# A multi-host Swarmlet cluster on one machine: every host is a network
# namespace on an underlay bridge, with its own swarmd (state dir, control
# socket, advertise address). By default all hosts share this machine's
# Docker daemon; with --engines every host runs its own engine.
#
#   deploy/cluster.sh up [N] [--engines]
#                                 build, start dockerd if needed, build the demo
#                                 image, create N hosts, init on h1, join the rest
#                                 (h2 … h$MANAGERS as managers, others as workers).
#                                 --engines (or ENGINES=1): each host gets its own
#                                 containerd and dockerd inside its namespace (own
#                                 data root, exec root, socket, pid file), as
#                                 separate machines have, and the demo image is
#                                 built into each; nothing is shared between nodes
#   deploy/cluster.sh docker H ARGS  the docker CLI against host H's engine
#   deploy/cluster.sh demo        create the demo service (3 replicas of swarmlet-demo)
#   deploy/cluster.sh status      swarmctl node ls and service ls
#   deploy/cluster.sh ctl H ARGS  run swarmctl against host H (e.g. ctl 2 node ls)
#   deploy/cluster.sh kill H      SIGKILL host H's swarmd (a crashed host)
#   deploy/cluster.sh start H     start host H's swarmd again (same state)
#   deploy/cluster.sh down        remove everything `up` made, also after a crash
#
# Environment: CLUSTER_DIR (default /tmp/swarmlet-cluster), PREFIX (default swl;
# names of namespaces and interfaces), SUBNET (default 10.210.0), NO_BUILD=1,
# MANAGERS (default 3: h1, h2 and h3 are managers), DATA_SUBNET (unset: none;
# e.g. 10.230.0: a second underlay, each host's eth1 at DATA_SUBNET.(10+i),
# given to swarmd as --data-path-addr, so overlay traffic goes that way).
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
data_ip() { echo "$DATA_SUBNET.$((10 + $1))"; }
ns() { echo "${PREFIX}-h$1"; }
sock() { echo "$CLUSTER_DIR/h$1.sock"; }
ctl() { "$BIN/swarmctl" -H "unix://$(sock "$1")" "${@:2}"; }
# Engines mode: a host's engine lives under $CLUSTER_DIR/h$i-engine (data) and
# /run/swarmlet-engines/$PREFIX-h$i (runtime state; short, for socket paths).
engines() { [ -e "$CLUSTER_DIR/engines" ]; }
engine_dir() { echo "$CLUSTER_DIR/h$1-engine"; }
engine_run() { echo "/run/swarmlet-engines/${PREFIX}-h$1"; }
engine_sock() { echo "$CLUSTER_DIR/h$1.docker.sock"; }
docker_of() {
  if engines; then docker -H "unix://$(engine_sock "$1")" "${@:2}"; else docker "${@:2}"; fi
}

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
  if [ -n "${DATA_SUBNET:-}" ]; then
    ip -n "$SWITCH" link add br1 type bridge
    ip -n "$SWITCH" link set br1 up
  fi
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
  if [ -n "${DATA_SUBNET:-}" ]; then
    ip -n "$SWITCH" link add "d$i" type veth peer name eth1 netns "$n"
    ip -n "$SWITCH" link set "d$i" master br1 up
    ip -n "$n" addr add "$(data_ip "$i")/24" dev eth1
    ip -n "$n" link set eth1 up
  fi
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
    --hostname "h$i" ${DATA_SUBNET:+--data-path-addr "$(data_ip "$i")"} $(engines && echo --docker-host "unix://$(engine_sock "$i")") ${SWARMD_ARGS:-} \
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

# Starts host $1's own containerd and dockerd inside its namespace (not
# waiting for them: see wait_engine). dockerd is given its containerd
# explicitly: left alone it would use a system containerd at
# /run/containerd/containerd.sock when one runs, shared by every engine.
start_engine() {
  local i=$1 e x n; e=$(engine_dir "$i"); x=$(engine_run "$i"); n=$(ns "$i")
  mkdir -p "$e" "$x"
  # As on a freshly booted machine: forwarding off until dockerd turns it on,
  # which then sets the FORWARD policy to DROP (DESIGN.md's pitfall).
  ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=0
  cat >"$e/containerd.toml" <<TOML
version = 2
root = "$e/containerd"
state = "$x/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$x/containerd.sock"
[ttrpc]
  address = "$x/containerd.sock.ttrpc"
TOML
  echo '{}' >"$e/daemon.json"
  setsid nsenter --net="/run/netns/$n" containerd --config "$e/containerd.toml" \
    >>"$CLUSTER_DIR/h$i-containerd.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/h$i-containerd.pid"
  setsid nsenter --net="/run/netns/$n" /usr/sbin/dockerd --config-file "$e/daemon.json" \
    --data-root "$e/docker" --exec-root "$x/docker" --pidfile "$x/dockerd.pid" \
    --containerd "$x/containerd.sock" -H "unix://$(engine_sock "$i")" \
    >>"$CLUSTER_DIR/h$i-dockerd.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/h$i-dockerd.pid"
}

wait_engine() {
  local i=$1
  for _ in $(seq 1 300); do
    docker_of "$i" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "h$i's dockerd did not come up; see $CLUSTER_DIR/h$i-dockerd.log"
  tail -5 "$CLUSTER_DIR/h$i-dockerd.log" >&2 || true
  return 1
}

# Stops a process started here (pid file $1) with SIGTERM, then SIGKILL
# after $2 s; only while it is still the program named $3.
stop_pidfile() {
  local pidfile=$1 wait=$2 name=$3 pid
  [ -e "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 $((wait * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Removes host $1's engine: its containers, dockerd, containerd (and the
# shims it started, should any outlive it), mounts and directories.
remove_engine() {
  local i=$1 e x ids pid; e=$(engine_dir "$i"); x=$(engine_run "$i")
  if docker_of "$i" version >/dev/null 2>&1; then
    ids=$(docker_of "$i" ps -aq)
    [ -z "$ids" ] || docker_of "$i" rm -f $ids >/dev/null 2>&1 || true
  fi
  stop_pidfile "$CLUSTER_DIR/h$i-dockerd.pid" 20 dockerd
  stop_pidfile "$CLUSTER_DIR/h$i-containerd.pid" 10 containerd
  for pid in $(pgrep -f "containerd-shim.*-address $x/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Mounts the engine left (overlay layers, netns files, shm), deepest first.
  awk '{print $5}' /proc/self/mountinfo | { grep -E "^($e|$x)/" || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$e" "$x" "$(engine_sock "$i")"
  rmdir /run/swarmlet-engines 2>/dev/null || true
}

up() {
  local n="${1:-3}"
  bash "$ROOT/deploy/setup.sh"
  [ "${NO_BUILD:-0}" = 1 ] || (cd "$ROOT" && cargo build --release --quiet -p swarmd -p swarmctl)
  # Tab completion for swarmctl (not for the test suite's clusters).
  [ "${NO_BUILD:-0}" = 1 ] || bash "$ROOT/deploy/install.sh" --completion-only --bin-dir "$BIN"
  down quiet
  if [ "${ENGINES:-0}" = 1 ]; then
    mkdir -p "$CLUSTER_DIR"
    touch "$CLUSTER_DIR/engines"
  else
    bash "$ROOT/deploy/dockerd.sh"
    bash "$ROOT/deploy/image.sh"
    mkdir -p "$CLUSTER_DIR"
  fi
  echo "$n" >"$CLUSTER_DIR/hosts"
  make_underlay
  for i in $(seq 1 "$n"); do make_host "$i"; done
  if engines; then
    for i in $(seq 1 "$n"); do start_engine "$i"; done
    local builds=() p
    for i in $(seq 1 "$n"); do
      wait_engine "$i"
      DOCKER_HOST="unix://$(engine_sock "$i")" bash "$ROOT/deploy/image.sh" &
      builds+=($!)
    done
    for p in "${builds[@]}"; do wait "$p"; done
  fi
  for i in $(seq 1 "$n"); do start_host "$i"; done
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
  log "$n hosts up ($(host_ip 1) … $(host_ip "$n")$(engines && echo ", an engine each")); swarmctl -H unix://$(sock 1) …"
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
  if engines; then
    for i in $(seq 1 "$n"); do remove_engine "$i"; done
  # Containers of this cluster's nodes (swarmd leaves them running on exit).
  elif docker version >/dev/null 2>&1; then
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
  up)
    shift
    count=3
    for a in "$@"; do
      case "$a" in
        --engines) ENGINES=1 ;;
        [0-9]*) count=$a ;;
        *) echo "usage: $0 up [N] [--engines]" >&2; exit 2 ;;
      esac
    done
    up "$count" ;;
  docker) shift; h=$1; shift; docker_of "$h" "$@" ;;
  demo) demo ;;
  status) status ;;
  ctl) shift; h=$1; shift; ctl "$h" "$@" ;;
  kill) stop_host "$2" KILL ;;
  start) start_host "$2" ;;
  stop) stop_host "$2" ;;
  down) down ;;
  *) echo "usage: $0 up [N] [--engines] | docker H ARGS | demo | status | ctl H ARGS | kill H | start H | stop H | down" >&2; exit 2 ;;
esac
