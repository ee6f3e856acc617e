"""Read the schema of a live Letta database from PostgreSQL's catalogs (no pytest, no ORM).

Letta's tables live in schema ``letta`` when the database was laid out like the official
image's init.sql, or in ``public`` on an operator's own PostgreSQL: the schema holding
``alembic_version``/``agents`` is found first, and everything is read from it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..errors import LettaCompatError, redact, register_secret

MARKER_TABLES = ("alembic_version", "agents")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)
_NEXTVAL = re.compile(r"nextval\('([^']+)'(?:::regclass)?\)")


@dataclass(frozen=True)
class LiveColumn:
    type: str  # format_type(), or the enum's name for enum columns
    nullable: bool
    default: str | None  # the default expression, as pg_get_expr prints it
    is_enum: bool = False


@dataclass(frozen=True)
class LiveIndex:
    columns: tuple[str, ...]
    unique: bool
    definition: str


@dataclass(frozen=True)
class LiveConstraint:
    kind: str  # "p" primary key, "u" unique, "f" foreign key, "c" check
    columns: tuple[str, ...]
    definition: str
    ref_table: str | None = None
    ref_columns: tuple[str, ...] = ()
    ondelete: str | None = None  # CASCADE, SET NULL, ... (None for NO ACTION)


@dataclass
class LiveTable:
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    indexes: dict[str, LiveIndex] = field(default_factory=dict)
    constraints: dict[str, LiveConstraint] = field(default_factory=dict)


@dataclass
class LiveSchema:
    schema: str | None  # None: no Letta tables anywhere
    revision: str | None
    on_search_path: bool
    tables: dict[str, LiveTable] = field(default_factory=dict)
    enums: dict[str, list[str]] = field(default_factory=dict)  # enum type -> its labels
    sequence_lag: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """``table.column`` -> (sequence, its next value, the column's largest value), only
    for sequences that would hand out a value already in use."""

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_dsn(dsn: str) -> str:
    """Accept Letta's own LETTA_PG_URI spellings (``postgresql+pg8000://``, ``+asyncpg``)."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn.strip())


def shown_dsn(dsn: str) -> str:
    """The DSN as it may be printed: passwords masked in URL and in key=value form."""
    return _KEYWORD_PASSWORD.sub(r"\1***", redact(dsn))


def connect(dsn: str, *, connect_timeout: int = 15) -> psycopg.Connection:
    """An autocommit connection; failures are one-paragraph errors without the password."""
    dsn = normalize_dsn(dsn)
    try:
        register_secret(conninfo_to_dict(dsn).get("password"))  # masked wherever it shows up
        return psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()).rstrip(".?") or type(exc).__name__
        raise LettaCompatError(f"Cannot connect to the database {shown_dsn(dsn)!r}: {redact(reason)}. "
                               "Give a DSN such as postgresql://USER@HOST:5432/DBNAME (with the password "
                               "in it or in $PGPASSWORD) that reaches Letta's database.") from None


def find_letta_schema(conn: psycopg.Connection) -> tuple[str | None, bool]:
    """The schema holding Letta's tables and whether this connection's search_path has it."""
    rows = conn.execute(
        "SELECT table_schema, count(*) FROM information_schema.tables WHERE table_name = ANY(%s) "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') GROUP BY table_schema",
        (list(MARKER_TABLES),)).fetchall()
    (search_path,) = conn.execute("SELECT current_schemas(false)").fetchone()
    if not rows:
        return None, False
    found = {schema: count for schema, count in rows}
    # prefer what Letta itself would see (the search path), then the most complete candidate
    ranked = sorted(found, key=lambda s: (s not in search_path,
                                          search_path.index(s) if s in search_path else 0,
                                          -found[s], s != "letta", s))
    return ranked[0], ranked[0] in search_path


def read_schema(conn: psycopg.Connection) -> LiveSchema:
    schema, on_search_path = find_letta_schema(conn)
    live = LiveSchema(schema=schema, revision=None, on_search_path=on_search_path)
    if schema is None:
        return live
    _read_columns(conn, live)
    _read_enums(conn, live)
    _read_indexes(conn, live)
    _read_constraints(conn, live)
    if "alembic_version" in live.tables:
        row = conn.execute(sql.SQL("SELECT version_num FROM {}.alembic_version").format(
            sql.Identifier(schema))).fetchone()
        live.revision = row[0] if row else None
    _read_sequence_lag(conn, live)
    return live


def _read_columns(conn: psycopg.Connection, live: LiveSchema) -> None:
    rows = conn.execute(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typtype = 'e', t.typname,
                  NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
           WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum""",
        (live.schema,)).fetchall()
    for table, column, type_, is_enum, type_name, nullable, default in rows:
        live.tables.setdefault(table, LiveTable()).columns[column] = LiveColumn(
            type_name if is_enum else type_, nullable, default, is_enum)


def _read_enums(conn: psycopg.Connection, live: LiveSchema) -> None:
    rows = conn.execute(
        """SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
           FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
           WHERE t.oid IN (SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s)
           GROUP BY t.typname""", (live.schema,)).fetchall()
    live.enums = {name: list(labels) for name, labels in rows}


def _read_indexes(conn: psycopg.Connection, live: LiveSchema) -> None:
    rows = conn.execute(
        """SELECT t.relname, i.relname, x.indisunique, pg_get_indexdef(x.indexrelid),
                  ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
                        FROM generate_series(1, x.indnkeyatts) AS k ORDER BY k)
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s""",
        (live.schema,)).fetchall()
    for table, name, unique, definition, columns in rows:
        if table in live.tables:
            live.tables[table].indexes[name] = LiveIndex(tuple(c.strip('"') for c in columns), unique, definition)


_ON_DELETE = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT", "r": "RESTRICT", "a": None}


def _read_constraints(conn: psycopg.Connection, live: LiveSchema) -> None:
    rows = conn.execute(
        """SELECT t.relname, k.conname, k.contype, pg_get_constraintdef(k.oid),
                  ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(n, i)
                        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
                  r.relname,
                  ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS u(n, i)
                        JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
                  k.confdeltype
           FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace LEFT JOIN pg_class r ON r.oid = k.confrelid
           WHERE n.nspname = %s""",
        (live.schema,)).fetchall()
    for table, name, kind, definition, columns, ref_table, ref_columns, ondelete in rows:
        if table in live.tables:
            live.tables[table].constraints[name] = LiveConstraint(
                kind, tuple(columns), definition, ref_table, tuple(ref_columns or ()),
                _ON_DELETE.get(ondelete) if kind == "f" else None)


def _read_sequence_lag(conn: psycopg.Connection, live: LiveSchema) -> None:
    """Find sequences behind their column (after a bulk restore without setval): every
    insert would then collide with an existing row (unique violation, HTTP 409)."""
    for table_name, table in live.tables.items():
        for column_name, column in table.columns.items():
            match = _NEXTVAL.search(column.default or "")
            if not match:
                continue
            sequence = match.group(1)
            try:
                last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.SQL(".").join(sql.Identifier(p.strip('"')) for p in _qualified(sequence, live.schema))
                )).fetchone()
                (largest,) = conn.execute(sql.SQL("SELECT max({}) FROM {}.{}").format(
                    sql.Identifier(column_name), sql.Identifier(live.schema), sql.Identifier(table_name))).fetchone()
            except psycopg.Error:
                continue  # a missing sequence shows up when the server inserts; nothing to add here
            upcoming = last + 1 if called else last
            if largest is not None and upcoming <= largest:
                live.sequence_lag[f"{table_name}.{column_name}"] = (sequence, upcoming, largest)


def _qualified(sequence: str, schema: str) -> list[str]:
    return sequence.split(".") if "." in sequence else [schema, sequence]
