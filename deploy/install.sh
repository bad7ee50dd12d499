#!/usr/bin/env bash
# Installs Swarmlet on this machine (run as root, after `cargo build --release`):
#   swarmd and swarmctl        -> $PREFIX/bin (/usr/local/bin)
#   bash completion            -> /usr/share/bash-completion/completions/swarmctl
#   zsh and fish completion    -> their vendor directories
#   the systemd unit           -> /etc/systemd/system/swarmd.service
# Options: --bin-dir DIR (where the built binaries are; target/release),
#          --completion-only. DESTDIR=… stages everything under a directory.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="$ROOT/target/release"
PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
ONLY_COMPLETION=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --completion-only) ONLY_COMPLETION=1; shift ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done
for b in swarmd swarmctl; do
  if [ ! -x "$BIN_DIR/$b" ]; then
    echo "install: $BIN_DIR/$b is missing: run cargo build --release first" >&2
    exit 1
  fi
done

if [ "$ONLY_COMPLETION" = 0 ]; then
  install -D -m 0755 "$BIN_DIR/swarmd" "$DESTDIR$PREFIX/bin/swarmd"
  install -D -m 0755 "$BIN_DIR/swarmctl" "$DESTDIR$PREFIX/bin/swarmctl"
  install -D -m 0644 "$ROOT/deploy/swarmd.service" "$DESTDIR/etc/systemd/system/swarmd.service"
fi
comp() { # shell, path
  mkdir -p "$(dirname "$DESTDIR$2")"
  "$BIN_DIR/swarmctl" completion "$1" > "$DESTDIR$2"
}
comp bash /usr/share/bash-completion/completions/swarmctl
comp zsh /usr/share/zsh/vendor-completions/_swarmctl
comp fish /usr/share/fish/vendor_completions.d/swarmctl.fish
echo "install: done${DESTDIR:+ (under $DESTDIR)}" >&2
