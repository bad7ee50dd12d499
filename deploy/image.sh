#!/usr/bin/env bash
# Builds the demo/test image `swarmlet-demo:latest` from project files only:
# Debian's busybox-static, with a shell, nc, nslookup, wget and a web server
# on port 80 that answers with the container's hostname (the task name), and
# `udp-echo` (built here with the C compiler; busybox has no UDP server).
# No registry involved (`docker import`). Idempotent: rebuilds only when
# the image is missing, was built from other files, or FORCE=1.
set -euo pipefail

IMAGE="${IMAGE:-swarmlet-demo:latest}"
here="$(cd "$(dirname "$0")" && pwd)"

# The image carries a digest of the files it is made from: an image built
# by an older version of this script is rebuilt.
version=$(cat "$0" "$here/image/demo-server" "$here/image/udp-echo.c" | sha256sum | cut -c1-12)
have=$(docker image inspect -f '{{index .Config.Labels "com.swarmlet.image.version"}}' "$IMAGE" 2>/dev/null || true)
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$version" ]; then
  exit 0
fi
busybox=/bin/busybox   # from Debian's busybox-static
[ -x "$busybox" ] || { echo "image.sh: busybox-static missing; run deploy/setup.sh" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "image.sh: $busybox is not static; install busybox-static" >&2
  exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,www,proc,sys,dev,run}
cp "$busybox" "$root/bin/busybox"
for tool in sh ash nc nslookup wget httpd hostname sleep cat echo ls ps ip ifconfig \
            ping kill true false dd wc timeout mkdir rm env printf grep sed head tail date id; do
  ln -s busybox "$root/bin/$tool"
done
install -m 0755 "$here/image/demo-server" "$root/bin/demo-server"
cc -static -O2 -o "$root/bin/udp-echo" "$here/image/udp-echo.c"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin' \
  --change 'EXPOSE 80' \
  --change "LABEL com.swarmlet.image.version=$version" \
  --change 'CMD ["/bin/demo-server"]' \
  - "$IMAGE" >/dev/null
echo "image.sh: built $IMAGE" >&2
