#!/usr/bin/env bash
# The Vagrant cluster on real VMs, end to end, on this machine.
#
#   bash deploy/vm-test.sh [--managers 3] [--workers 1] [--memory 1024] [--keep]
#
# Builds (or reuses) the swarmlet/bookworm box (deploy/vagrant/build-box.sh),
# finds out whether KVM can boot a guest here (nested KVM hangs on some
# machines; then qemu's TCG is used), and runs libvirtd and vagrant inside
# a network namespace of its own, so that the VMs' network (libvirt's
# bridges and dnsmasq) lives there and nothing is routed to or from this
# machine's namespace. Then `vagrant up` with the release binaries and the
# demo image staged for the VMs, the checks, and `vagrant destroy -f`;
# everything is torn down on exit, also on failure (--keep leaves the
# cluster and the namespace up for a look, and prints how to remove them).
# Each phase's duration is printed, and a JSON line at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

MANAGERS=3
WORKERS=1
MEMORY=1024
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --managers) MANAGERS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --memory) MEMORY="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "vm-test: unknown option $1" >&2; exit 2 ;;
  esac
done

NS="swvm-$$"
STAGE=""
LIBVIRTD_PID=""
VIRTLOGD_PID=""
declare -A TOOK=()

log() { echo "vm-test: $*" >&2; }
phase_start() { PHASE="$1"; PHASE_T0=$(date +%s); log "$1..."; }
phase_end() {
  TOOK[$PHASE]=$(( $(date +%s) - PHASE_T0 ))
  log "$PHASE took ${TOOK[$PHASE]} s"
}
in_ns() { ip netns exec "$NS" "$@"; }
vg() {
  in_ns env VAGRANT_CWD="$STAGE/deploy" VAGRANT_DEFAULT_PROVIDER=libvirt \
    MANAGERS="$MANAGERS" WORKERS="$WORKERS" VM_MEMORY="$MEMORY" VM_BOOT_TIMEOUT=1200 \
    LIBVIRT_DRIVER="$DRIVER" SWARMLET_SYNC_DIR="$STAGE" vagrant "$@"
}
# Runs a command on a VM as root; its output on stdout.
on() { local vm="$1"; shift; vg ssh "$vm" -c "sudo $*" -- -q | tr -d '\r'; }
# Evaluates a Python expression over the JSON on stdin (bound to `j`);
# prints the result, nothing when the input is not JSON.
pyj() { python3 -c "import json,sys
try: j=json.load(sys.stdin)
except Exception: sys.exit(0)
r=$1
print(r if not isinstance(r,list) else '\n'.join(map(str,r)))"; }

teardown() {
  local rc=$?
  if [ "$KEEP" = 1 ] && [ -n "$STAGE" ]; then
    log "kept: ip netns exec $NS env VAGRANT_CWD=$STAGE/deploy vagrant ...;" \
      "remove with: (cd $STAGE/deploy && ip netns exec $NS vagrant destroy -f);" \
      "kill $LIBVIRTD_PID $VIRTLOGD_PID; ip netns del $NS; rm -rf $STAGE"
    exit "$rc"
  fi
  if [ -n "$STAGE" ] && [ -d "$STAGE/deploy/.vagrant" ] && [ -n "$LIBVIRTD_PID" ]; then
    vg destroy -f >/dev/null 2>&1 || log "vagrant destroy failed"
  fi
  if [ -n "$LIBVIRTD_PID" ]; then
    # The box's volume in libvirt's pool is kept for the next run; the
    # volumes of older builds of the box are not.
    in_ns virsh -c qemu:///system vol-list default 2>/dev/null \
      | awk '/bookworm_vagrant_box_image/ {print $1}' | sort -t_ -k6 -n | head -n -1 \
      | while read -r vol; do in_ns virsh -c qemu:///system vol-delete --pool default "$vol" >/dev/null 2>&1 || true; done
  fi
  for pid in $LIBVIRTD_PID $VIRTLOGD_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $LIBVIRTD_PID $VIRTLOGD_PID; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  ip netns del "$NS" 2>/dev/null || true
  [ -n "$STAGE" ] && rm -rf "$STAGE"
  exit "$rc"
}
# Creates a service (`create service NAME ARGS…`, detached) or a network
# (`create network NAME ARGS…`) on m1, retried until it exists: under TCG a
# starved manager VM can miss the 0.5–1 s election timeout, and a call then
# fails with "leadership lost" or "no leader"; a user would run it again,
# and so does this.
create() {
  local kind="$1" name="$2"; shift 2
  for _ in $(seq 1 30); do
    on m1 swarmctl "$kind" inspect "$name" >/dev/null 2>&1 && return 0
    if [ "$kind" = service ]; then
      on m1 swarmctl service create -d --name "$name" "$@" >/dev/null 2>&1 || sleep 2
    else
      on m1 swarmctl network create "$@" "$name" >/dev/null 2>&1 || sleep 2
    fi
  done
  on m1 swarmctl "$kind" inspect "$name" >/dev/null
}
# Runs a query, retried a few times for the same reason.
retry_query() {
  local out
  for _ in $(seq 1 10); do
    if out="$("$@")"; then printf '%s\n' "$out"; return 0; fi
    sleep 2
  done
  "$@"
}
trap teardown EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

phase_start "packages"
need=(qemu-system-x86 libvirt-daemon-system libvirt-clients dnsmasq-base vagrant vagrant-libvirt rsync)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # A newer qemu-utils (backports) breaks qemu-system-common: install the
  # release's own version with it.
  qemu_utils="qemu-utils=$(apt-cache policy qemu-utils | awk '/^ +[0-9]/ && /bookworm\/main/ {print v} {v=$1}' | head -1)"
  [ "$qemu_utils" = "qemu-utils=" ] && qemu_utils=qemu-utils
  apt-get install -y -q --no-install-recommends --allow-downgrades "${missing[@]}" "$qemu_utils" >/dev/null
fi
phase_end

phase_start "box"
bash "$ROOT/deploy/vagrant/build-box.sh"
BOX_CACHE="${SWARMLET_BOX_CACHE:-/var/cache/swarmlet/box}"
# libvirt's qemu user reads the kernel from here (the cache is root's only).
install -d /var/lib/libvirt/boot
install -m 0644 "$BOX_CACHE/vmlinuz" /var/lib/libvirt/boot/swarmlet-vmlinuz
install -m 0644 "$BOX_CACHE/initrd.img" /var/lib/libvirt/boot/swarmlet-initrd.img
phase_end

phase_start "kvm-probe"
# Boots the box's kernel under KVM for up to 20 s: a kernel that reaches
# init prints "Freeing unused kernel" on the serial console.
DRIVER=qemu
if [ -c /dev/kvm ]; then
  probe="$(mktemp)"
  qemu-system-x86_64 -accel kvm -m 256 -smp 1 -display none -no-reboot -nic none \
    -kernel /var/lib/libvirt/boot/swarmlet-vmlinuz -initrd /var/lib/libvirt/boot/swarmlet-initrd.img \
    -append "console=ttyS0 panic=-1" -serial "file:$probe" >/dev/null 2>&1 &
  qpid=$!
  for _ in $(seq 1 200); do
    if grep -q "Freeing unused kernel" "$probe" 2>/dev/null; then DRIVER=kvm; break; fi
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  rm -f "$probe"
fi
log "libvirt driver: $DRIVER"
phase_end

phase_start "stage"
# What the VMs get at /swarmlet: deploy/, the release binaries (stripped),
# and the demo image saved from the local engine.
(cd "$ROOT" && cargo build --release -q -p swarmd -p swarmctl)
bash "$ROOT/deploy/dockerd.sh"
bash "$ROOT/deploy/image.sh" >/dev/null
STAGE="$(mktemp -d /tmp/swarmlet-vm.XXXXXX)"
mkdir -p "$STAGE/target/release"
cp -r "$ROOT/deploy" "$STAGE/"
rm -rf "$STAGE/deploy/.vagrant"
for b in swarmd swarmctl; do
  cp "$ROOT/target/release/$b" "$STAGE/target/release/"
  strip "$STAGE/target/release/$b"
done
docker save swarmlet-demo:latest -o "$STAGE/deploy/.vagrant-image.tar"
phase_end

phase_start "namespace"
if [ -S /run/libvirt/libvirt-sock ] && virsh -c qemu:///system version >/dev/null 2>&1; then
  log "a libvirtd already runs on this machine: stop it first (its VMs' network would not be in the namespace)"
  exit 1
fi
ip netns add "$NS"
in_ns ip link set lo up
in_ns virtlogd -d -p "/run/$NS-virtlogd.pid"
in_ns libvirtd -d -p "/run/$NS-libvirtd.pid"
for _ in $(seq 1 100); do
  [ -s "/run/$NS-libvirtd.pid" ] && in_ns virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.1
done
VIRTLOGD_PID="$(cat "/run/$NS-virtlogd.pid")"
LIBVIRTD_PID="$(cat "/run/$NS-libvirtd.pid")"
phase_end

# Vagrant's output without its progress lines.
filtered() { "$@" 2>&1 | sed -u 's/\x1b\[K/\n/g' | grep --line-buffered -v "Progress" >&2; }

phase_start "boot"
# All VMs boot together (vagrant-libvirt brings machines up in parallel);
# provisioning follows in order, since the others join m1.
filtered vg up --no-provision
phase_end

phase_start "provision"
filtered vg provision m1
# m1's join tokens are now in the staged folder: sync it to the others.
others=()
for i in $(seq 2 "$MANAGERS"); do others+=("m$i"); done
for i in $(seq 1 "$WORKERS"); do others+=("w$i"); done
if [ "${#others[@]}" -gt 0 ]; then
  filtered vg rsync "${others[@]}"
  for vm in "${others[@]}"; do filtered vg provision "$vm"; done
fi
phase_end

phase_start "join"
# Every node ready, with the right roles.
want=$((MANAGERS + WORKERS))
ready=""
for _ in $(seq 1 120); do
  ready="$(on m1 swarmctl node ls --format json | pyj "sum(n['status']=='ready' for n in j)" || true)"
  [ "$ready" = "$want" ] && break
  sleep 1
done
[ "$ready" = "$want" ] || { log "only $ready of $want nodes ready:"; on m1 swarmctl node ls >&2; exit 1; }
managers="$(retry_query on m1 swarmctl node ls --format json | pyj "sum(n['role']=='manager' for n in j)" || true)"
[ "$managers" = "$MANAGERS" ] || { log "$managers managers, expected $MANAGERS"; exit 1; }
on m1 swarmctl node ls >&2
phase_end

phase_start "demo"
# Under TCG a container takes many seconds to start: wait by polling.
create service web -p 8080:80 --replicas 3 swarmlet-demo:latest
running=0
for _ in $(seq 1 600); do
  running="$(on m1 swarmctl service ls --format json | pyj "[s['replicas_running'] for s in j if s['name']=='web']" || true)"
  [ "${running:-0}" = 3 ] && break
  sleep 1
done
[ "${running:-0}" = 3 ] || { log "web did not converge:"; on m1 swarmctl service ps web >&2; exit 1; }
vms=()
for i in $(seq 1 "$MANAGERS"); do vms+=("m$i"); done
for i in $(seq 1 "$WORKERS"); do vms+=("w$i"); done
seen=""
for idx in "${!vms[@]}"; do
  ip="192.168.56.$((11 + idx))"
  for _ in $(seq 1 60); do
    body="$(in_ns curl -s -m 3 "http://$ip:8080/" || true)"
    [ -n "$body" ] && break
    sleep 1
  done
  [ -n "$body" ] || { log "${vms[$idx]} ($ip) does not answer on 8080"; exit 1; }
  seen="$seen$(for _ in $(seq 1 12); do in_ns curl -s -m 3 "http://$ip:8080/"; echo; done)"$'\n'
done
backends="$(echo "$seen" | grep -v '^$' | sort -u | wc -l)"
log "answers came from $backends distinct backends"
[ "$backends" -ge 3 ] || { log "the mesh did not spread over the 3 tasks:"; echo "$seen" | sort | uniq -c >&2; exit 1; }
phase_end

phase_start "dns"
create network apps --driver overlay
create service api --network apps --replicas 1 swarmlet-demo:latest
create service client --network apps --replicas 1 swarmlet-demo:latest
resolved=""
for _ in $(seq 1 300); do
  task="$(on m1 swarmctl service ps client --format json \
    | pyj "[t['node']+' '+t['container_id'] for t in j if t['current_state']=='running' and t['container_id']][:1]" || true)"
  if [ -n "$task" ]; then
    node="${task%% *}"
    cid="${task#* }"
    if [ -n "$cid" ]; then
      resolved="$(on "$node" docker exec "$cid" busybox nslookup api 2>/dev/null | grep -c Address || true)"
      [ "${resolved:-0}" -ge 2 ] && break
    fi
  fi
  sleep 1
done
[ "${resolved:-0}" -ge 2 ] || { log "client could not resolve api on the overlay"; exit 1; }
phase_end

phase_start "failover"
leader_of() { on "$1" swarmctl node ls --format json | pyj "[n['hostname'] for n in j if n['manager_status']=='leader']" || true; }
leader="$(leader_of m1)"
[ -n "$leader" ] || leader=m1
log "halting the leader's VM, $leader"
vg halt "$leader" >&2
other=m1
[ "$leader" = m1 ] && other=m2
new_leader=""
for _ in $(seq 1 120); do
  new_leader="$(leader_of "$other")"
  [ -n "$new_leader" ] && [ "$new_leader" != "$leader" ] && break
  sleep 1
done
[ -n "$new_leader" ] && [ "$new_leader" != "$leader" ] || { log "no new leader after halting $leader"; exit 1; }
log "new leader: $new_leader"
for _ in $(seq 1 180); do
  running="$(on "$other" swarmctl service ps web --format json \
    | pyj "sum(t['desired_state']=='running' and t['current_state']=='running' and t['node']!='$leader' for t in j)" || true)"
  [ "${running:-0}" -ge 3 ] && break
  sleep 1
done
[ "${running:-0}" -ge 3 ] || { log "web's tasks were not rescheduled off $leader"; on "$other" swarmctl service ps web >&2; exit 1; }
phase_end

json="{\"managers\":$MANAGERS,\"workers\":$WORKERS,\"driver\":\"$DRIVER\""
for p in "${!TOOK[@]}"; do json="$json,\"${p}_s\":${TOOK[$p]}"; done
echo "$json}"
log "passed"
