#!/usr/bin/env bash
# A Docker engine for the docker backend, from Debian's packages, with its own data
# directory (the image layer cache lives there between runs). Idempotent: installs what is
# missing, starts dockerd unless it already answers, waits for it, and prints the
# DOCKER_HOST to use on stdout (it exports nothing):
#   export DOCKER_HOST=$(.ci/docker-setup.sh)
#   .ci/docker-setup.sh --stop        # stop that dockerd again
set -euo pipefail
ROOT=${LETTA_COMPAT_DOCKER_DIR:-/var/lib/letta-compat-docker}
SOCK="$ROOT/docker.sock"

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$ROOT/dockerd.pid" ] && kill -TERM "$(cat "$ROOT/dockerd.pid")" 2>/dev/null; then
    for _ in $(seq 60); do [ -e "$ROOT/dockerd.pid" ] || break; sleep 0.5; done
  fi
  exit 0
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" >&2
fi

mkdir -p "$ROOT"
if ! docker -H "unix://$SOCK" info >/dev/null 2>&1; then
  nohup dockerd --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
    -H "unix://$SOCK" >"$ROOT/dockerd.log" 2>&1 &
  for _ in $(seq 120); do
    docker -H "unix://$SOCK" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker -H "unix://$SOCK" info >/dev/null 2>&1; then
    echo "dockerd did not answer within 60 s; last lines of $ROOT/dockerd.log:" >&2
    tail -20 "$ROOT/dockerd.log" >&2
    exit 1
  fi
fi
echo "unix://$SOCK"
