#!/usr/bin/env bash
# Builds the images matrices/docker.toml needs: letta-compat/letta:<version> for each of its
# servers and letta-compat/pgvector:pg15 (no registry is reachable in CI, so no pulls).
# Docker's layer cache makes a re-run take seconds. Needs DOCKER_HOST from docker-setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# plus the newest release, which the round-trip tests restore into (one symlink layer: its venv is
# the migration venv every image carries)
"${LETTA_COMPAT:-.venv/bin/letta-compat}" images build --matrix "${1:-matrices/docker.toml}" --server 0.16.8
echo "docker images ready in $(( $(date +%s) - start )) s"
