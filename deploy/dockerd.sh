#!/usr/bin/env bash
# Makes sure a Docker daemon answers on /var/run/docker.sock: starts
# /usr/sbin/dockerd (fully detached, log in /var/log/swarmlet-dockerd.log)
# when none runs. Idempotent; leaves a running daemon alone.
set -euo pipefail

if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  exit 0
fi
if ! [ -x /usr/sbin/dockerd ]; then
  echo "dockerd.sh: /usr/sbin/dockerd missing; run deploy/setup.sh first" >&2
  exit 1
fi
echo "dockerd.sh: starting dockerd" >&2
setsid /usr/sbin/dockerd >/var/log/swarmlet-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 120); do
  if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd.sh: dockerd did not come up; see /var/log/swarmlet-dockerd.log" >&2
tail -5 /var/log/swarmlet-dockerd.log >&2 || true
exit 1
