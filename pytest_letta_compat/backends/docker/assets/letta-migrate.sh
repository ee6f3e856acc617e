#!/bin/sh
# The migration step of the official image's startup.sh: alembic upgrade to this version's
# head ($LETTA_ALEMBIC_HEAD, or the revision given as $1) on $LETTA_PG_URI.
set -e
if [ -z "${LETTA_PG_URI:-}" ]; then
  echo "ERROR: LETTA_PG_URI is not set: this image has no internal PostgreSQL." >&2
  exit 1
fi
cd /opt/letta-migrations
exec /opt/letta-migrator/bin/alembic upgrade "${1:-$LETTA_ALEMBIC_HEAD}"
