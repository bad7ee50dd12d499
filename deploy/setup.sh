#!/usr/bin/env bash
# Installs what Swarmlet's build, tests and local cluster need on a fresh
# Debian machine (run as root). Idempotent: installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential   # cc for ring and sled's dependencies
  pkg-config
  iproute2          # ip netns, bridge fdb: local multi-host cluster and data plane
  nftables          # routing mesh and service VIPs (no IPVS on this kernel)
  conntrack         # drops a removed backend's connections (routing mesh)
  wrk               # swarm-bench mesh: HTTP load generator
  curl              # end-to-end tests: HTTP through the routing mesh
  busybox-static    # the demo image is built from it
  docker.io         # dockerd 20.10 for the Docker executor
  ca-certificates
  bash-completion   # swarmctl's tab completion (deploy/install.sh installs the script)
  chromium          # the browser view's end-to-end test (headless, in a test namespace)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
  fi
fi

# swarmctl's bash completion, once a swarmctl is built (deploy/install.sh
# installs it with the binaries; this covers a machine that runs them from
# the build tree).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for b in "$ROOT/target/release/swarmctl" "$ROOT/target/debug/swarmctl"; do
  if [ -x "$b" ]; then
    mkdir -p /usr/share/bash-completion/completions
    "$b" completion bash > /usr/share/bash-completion/completions/swarmctl
    break
  fi
done
