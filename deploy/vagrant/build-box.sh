#!/usr/bin/env bash
# Builds the Vagrant box `swarmlet/bookworm` (libvirt provider) from
# Debian's packages alone, since no box can be downloaded here, and
# registers it with `vagrant box add`.
#
#   bash deploy/vagrant/build-box.sh [--force]
#
# The box is a Debian 12 root file system made by debootstrap, written as
# an ext4 file system over the whole disk (no partition table, no boot
# loader) and converted to qcow2. The VMs boot it directly: the kernel and
# initrd are kept beside the box in the cache and handed to libvirt by
# deploy/Vagrantfile (`kernel`, `initrd`, `cmd_line`). Everything that
# provisioning needs is preinstalled (docker.io, nftables, iproute2,
# conntrack, busybox-static, rsync for the synced folder), so `vagrant up`
# needs no network beyond the VMs' own.
#
# Cache: $SWARMLET_BOX_CACHE (default /var/cache/swarmlet/box) holds
# box.tar, vmlinuz, initrd.img and a stamp naming what they were built
# from; a rebuild happens only when this script changed or with --force.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SWARMLET_BOX_CACHE:-/var/cache/swarmlet/box}"
BOX_NAME="${SWARMLET_BOX:-swarmlet/bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DISK_GB=8
PACKAGES=(
  systemd-sysv udev kmod linux-image-cloud-amd64 initramfs-tools
  ifupdown isc-dhcp-client openssh-server sudo rsync
  docker.io nftables iproute2 conntrack busybox-static bash-completion
  ca-certificates procps apparmor
)

force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "build-box: $*" >&2; }

stamp="$(sha256sum "$HERE/build-box.sh" | cut -d' ' -f1)"
if [ "$force" = 0 ] && [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$stamp" ] \
  && [ -s "$CACHE/box.tar" ] && [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initrd.img" ]; then
  log "cached box is current ($CACHE)"
else
  missing=()
  for p in debootstrap qemu-utils e2fsprogs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi

  # The cache is root's alone from creation (the image holds the vagrant
  # user's key); the guest's own files keep Debian's usual modes.
  mkdir -p "$(dirname "$CACHE")"
  [ -d "$CACHE" ] || mkdir -m 0700 "$CACHE"
  umask 022
  work="$(mktemp -d "$CACHE/build.XXXXXX")"
  cleanup() {
    for m in proc sys dev; do
      mountpoint -q "$work/root/$m" && umount -l "$work/root/$m"
    done
    rm -rf "$work"
  }
  trap cleanup EXIT
  root="$work/root"

  t0=$(date +%s)
  log "debootstrap bookworm from $MIRROR"
  include="$(IFS=,; echo "${PACKAGES[*]}")"
  debootstrap --variant=minbase --include="$include" bookworm "$root" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  log "debootstrap took $(( $(date +%s) - t0 )) s"

  # The guest: root on the whole virtio disk, eth0 by DHCP (libvirt's
  # management network), the vagrant user with Vagrant's well-known key
  # (replaced by a fresh one at the first `vagrant up`), password-less sudo.
  echo swarmlet > "$root/etc/hostname"
  printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$root/etc/fstab"
  mkdir -p "$root/etc/network"
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' \
    > "$root/etc/network/interfaces"
  chroot "$root" useradd -m -s /bin/bash -G sudo,docker vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/vagrant"
  install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
  pub="$(find /usr/share/rubygems-integration /usr/share/vagrant /opt/vagrant \
    -name vagrant.pub -path '*keys*' 2>/dev/null | head -1 || true)"
  [ -n "$pub" ] || { log "vagrant's insecure public key not found (is vagrant installed?)"; exit 1; }
  install -m 0600 -o 1000 -g 1000 "$pub" "$root/home/vagrant/.ssh/authorized_keys"
  printf 'UseDNS no\nPasswordAuthentication no\n' > "$root/etc/ssh/sshd_config.d/vagrant.conf"
  # Boots fast and quietly under TCG: no swap, no getty on tty1 to wait on.
  ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
  # swarmd is installed and started by provisioning, not here.
  rm -f "$root"/etc/ssh/ssh_host_*
  cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Make this VM's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
  chroot "$root" systemctl enable ssh-hostkeys.service >/dev/null 2>&1
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/tmp/*
  : > "$root/etc/machine-id"

  kernel="$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)"
  initrd="$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)"
  cp "$kernel" "$work/vmlinuz"
  cp "$initrd" "$work/initrd.img"

  log "making the ${DISK_GB} GiB disk"
  truncate -s "${DISK_GB}G" "$work/disk.raw"
  mkfs.ext4 -q -F -L root -d "$root" "$work/disk.raw"
  mkdir -p "$work/box"
  qemu-img convert -O qcow2 "$work/disk.raw" "$work/box/box.img"
  rm -f "$work/disk.raw"
  printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GB" \
    > "$work/box/metadata.json"
  cat > "$work/box/Vagrantfile" <<'VF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
  end
end
VF
  tar -C "$work/box" -cf "$work/box.tar" metadata.json Vagrantfile box.img
  mv "$work/box.tar" "$work/vmlinuz" "$work/initrd.img" "$CACHE/"
  echo "$stamp" > "$CACHE/stamp"
  log "box built in $(( $(date +%s) - t0 )) s: $(du -h "$CACHE/box.tar" | cut -f1)"
fi

# Registered (again) when vagrant does not have this very build.
if ! vagrant box list 2>/dev/null | grep -q "^$BOX_NAME " \
  || [ "$(cat "$CACHE/added" 2>/dev/null)" != "$(cat "$CACHE/stamp")" ]; then
  vagrant box add --force --name "$BOX_NAME" "$CACHE/box.tar" >/dev/null
  cp "$CACHE/stamp" "$CACHE/added"
  log "registered $BOX_NAME"
fi
