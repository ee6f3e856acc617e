"""The operator's Letta database, reached through a DSN: its layout, its sessions, and the
destructive operations (drop + recreate, pg_restore) the upgrade and rollback need
(postgres.client.pg_dump makes the archives, with the same embedded client tools).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ..errors import LettaCompatError
from ..postgres import layout as init_sql
from ..postgres.client import archive_listing, connect, dsn_params, pg_restore
from ..schema.inspect import find_letta_schema, read_revision


@dataclass(frozen=True)
class Layout:
    """How a Letta database is laid out: the official init.sql puts everything, pgvector
    included, in schema ``letta`` and drops ``public``; an operator's own may use ``public``."""

    schema: str
    owner: str


class LettaDatabase:
    def __init__(self, dsn: str):
        self.params = dsn_params(dsn)
        self.dsn = make_conninfo(**self.params)
        self.name = self.params.get("dbname")
        if not self.name:
            raise LettaCompatError(f"--dsn {dsn!r} names no database. Give one such as "
                                   "postgresql://USER@HOST:5432/DBNAME.")

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

    revision = staticmethod(read_revision)  # (conn, schema) -> the alembic revision stamped there

    def exists(self) -> bool:
        with self._maintenance_connection() as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None

    def require_quiet(self, doing: str) -> None:
        """Refuse while anything else (a Letta server) is connected to the database. Only
        client connections count: an autovacuum worker visiting a freshly copied database
        (seen on the server-upgrade table's run) is PostgreSQL's own and leaves by itself."""
        with self.connect() as conn:
            rows = conn.execute("SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local'), count(*) "
                                "FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                                "GROUP BY 1").fetchall()
        if rows:
            who = ", ".join(f"{count} from {name}" for name, count in rows)
            raise LettaCompatError(f"Refusing to {doing}: the {self} still has other connections ({who}). "
                                   "Stop the Letta server that uses it (e.g. `docker compose stop letta`) and "
                                   "run the command again.")

    # -- changing --------------------------------------------------------------------------
    def recreate(self, layout: Layout, *, lay_out: bool) -> None:
        """Drop the database and create it empty again. With ``lay_out``, also create the
        schema and pgvector as init.sql does (a pg_restore archive brings its own)."""
        with self._maintenance_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            init_sql.create_database(conn, self.name, owner=layout.owner, schema=layout.schema, template="template0")
        if lay_out:
            with self.connect() as conn:
                init_sql.lay_out(conn, owner=layout.owner, schema=layout.schema)

    def _maintenance_connection(self) -> psycopg.Connection:
        """A connection to another database of the server (one cannot drop the database one is in)."""
        try:
            return self.connect("postgres")
        except LettaCompatError as first:
            try:
                return self.connect("template1")
            except LettaCompatError:
                raise first from None

    def restore_archive(self, archive: Path, layout: Layout) -> None:
        """Replace the database with the contents of a ``pg_dump -Fc`` archive."""
        self.recreate(layout, lay_out=False)
        pg_restore(self.dsn, archive)
        if layout.schema != "public":
            with self.connect() as conn:
                init_sql.drop_public(conn)  # template0 brings one; init.sql's layout has none


_TOC_ALEMBIC = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) alembic_version ", re.M)


def archive_schema(archive: Path) -> str:
    """The schema holding Letta's tables in a ``pg_dump -Fc`` archive (``pg_restore -l``).
    Reading the table of contents also proves the archive is readable before anything is dropped."""
    try:
        listing = archive_listing(archive)
    except LettaCompatError as exc:
        raise LettaCompatError(f"The database archive {archive} cannot be read: {exc}") from None
    match = _TOC_ALEMBIC.search(listing)
    if not match:
        raise LettaCompatError(f"The database archive {archive} holds no alembic_version table: it is not a "
                               "dump of a Letta database.")
    return match.group(1)
