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
# The install script, staged in a scratch directory with the debug binaries.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
DESTDIR="$STAGE" bash deploy/install.sh --bin-dir target/debug
for f in usr/local/bin/swarmd usr/local/bin/swarmctl etc/systemd/system/swarmd.service \
         usr/share/bash-completion/completions/swarmctl; do
  [ -s "$STAGE/$f" ] || { echo "install.sh did not install $f" >&2; exit 1; }
done
bash -n "$STAGE/usr/share/bash-completion/completions/swarmctl"
