"""A Letta database laid out as the official image's init.sql does: schema ``letta``
holding pgvector's ``vector``, on the database's search_path, and no ``public``.

An operator's own PostgreSQL may keep Letta in ``public`` instead: every function takes
the schema, and leaves ``public`` alone when that is Letta's schema.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

LETTA_SCHEMA = "letta"


def create_database(admin: psycopg.Connection, name: str, *, owner: str, schema: str = LETTA_SCHEMA,
                    template: str | None = None) -> None:
    """``CREATE DATABASE`` (a copy of ``template`` when given) with Letta's search_path.
    ``admin`` is an autocommit connection to another database of the server."""
    ident = sql.Identifier(name)
    clause = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template)) if template else sql.SQL("")
    admin.execute(sql.SQL("CREATE DATABASE {}{} OWNER {}").format(ident, clause, sql.Identifier(owner)))
    if schema != "public":  # database-level settings are never copied from a template
        admin.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(ident, sql.Identifier(schema)))


def lay_out(conn: psycopg.Connection, *, owner: str, schema: str = LETTA_SCHEMA) -> None:
    """In an empty database: Letta's schema with pgvector in it, and no ``public``."""
    if schema != "public":
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), sql.Identifier(owner)))
    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA {}").format(sql.Identifier(schema)))
    if schema != "public":
        drop_public(conn)


def drop_public(conn: psycopg.Connection) -> None:
    """Drop the ``public`` schema a new database brings; RESTRICT: should anything have
    been put there (a restored archive's objects), it stays."""
    try:
        conn.execute("DROP SCHEMA IF EXISTS public")
    except psycopg.errors.DependentObjectsStillExist:
        pass
