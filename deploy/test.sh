#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: setup, style checks, tests.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash deploy/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
bash deploy/vagrant-validate.sh
# The end-to-end tests need a Docker daemon (started detached if none runs)
# and the demo image; they create their own namespace hosts and remove them.
bash deploy/dockerd.sh
bash deploy/image.sh
cargo test --workspace 2>&1
