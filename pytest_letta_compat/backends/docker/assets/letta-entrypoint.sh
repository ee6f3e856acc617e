#!/bin/sh
# What the official image's startup.sh does: Redis (internal unless LETTA_REDIS_HOST is set),
# migrations on every start (a failure exits 1), then `letta server` (--secure if SECURE=true).
set -e
if [ -n "${LETTA_REDIS_HOST:-}" ]; then
  echo "External Redis configuration detected, using env var LETTA_REDIS_HOST=${LETTA_REDIS_HOST}"
else
  redis-server --daemonize yes --bind 127.0.0.1 --save "" --appendonly no >/dev/null
  export LETTA_REDIS_HOST=localhost
fi
if [ -z "${LETTA_PG_URI:-}" ]; then
  echo "ERROR: LETTA_PG_URI is not set. Unlike the official image, this one has no internal" \
       "PostgreSQL: point LETTA_PG_URI at a PostgreSQL >= 15 with pgvector." >&2
  exit 1
fi
echo "External Postgres configuration detected, using env var LETTA_PG_URI"
echo "Attempting to migrate database..."
if ! /usr/local/bin/letta-migrate.sh; then
  echo "ERROR: Database migration failed!" >&2
  exit 1
fi
echo "Database migration completed successfully."
set -- letta server --host "${HOST:-0.0.0.0}" --port "${PORT:-8283}"
if [ "${SECURE:-false}" = "true" ]; then
  set -- "$@" --secure
fi
echo "Starting Letta server ${LETTA_VERSION} at http://${HOST:-0.0.0.0}:${PORT:-8283}..."
exec "$@"
