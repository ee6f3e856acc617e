#!/bin/sh
# Lays the database out as Letta's image does for its internal PostgreSQL: tables in schema
# "letta" with pgvector in it, no "public" schema.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE SCHEMA letta AUTHORIZATION "$POSTGRES_USER";
ALTER DATABASE "$POSTGRES_DB" SET search_path TO letta;
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA letta;
DROP SCHEMA IF EXISTS public CASCADE;
SQL
