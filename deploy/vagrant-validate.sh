#!/usr/bin/env bash
# Checks deploy/Vagrantfile with `vagrant validate` (default sizes and 3
# managers + 2 workers). Installs Debian's vagrant and vagrant-libvirt if
# missing: validate needs a usable provider, and libvirt's client is enough.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
for p in vagrant vagrant-libvirt; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "vagrant-validate: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
vagrant validate
MANAGERS=3 WORKERS=2 vagrant validate
rm -rf .vagrant
