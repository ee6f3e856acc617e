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

MARKER_TABLES = ("alembic_version", "agents")
_NEXTVAL = re.compile(r"nextval\('((?:[^']|'')+)'(?:::regclass)?\)")
_IDENTIFIER = re.compile(r'"((?:[^"]|"")*)"|([^".]+)')


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
    valid: bool = True  # False: an interrupted CREATE INDEX CONCURRENTLY left it behind (pg_index.indisvalid)


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
        live.revision = read_revision(conn, schema)
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
    invalid = set(invalid_indexes(conn, live.schema))
    for table, name, unique, definition, columns in rows:
        if table in live.tables:
            live.tables[table].indexes[name] = LiveIndex(tuple(c.strip('"') for c in columns), unique, definition,
                                                         name not in invalid)


def invalid_indexes(conn: psycopg.Connection, schema: str | None = None) -> list[str]:
    """The indexes of ``schema`` (default: the current one) that PostgreSQL marks INVALID: left
    by an interrupted ``CREATE INDEX CONCURRENTLY``, never used, never rebuilt by Letta's
    ``IF NOT EXISTS`` migrations."""
    rows = conn.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_namespace n ON n.oid = i.relnamespace WHERE NOT x.indisvalid "
        "AND n.nspname = coalesce(%s::name, current_schema()) ORDER BY i.relname", (schema,)).fetchall()
    return [name for (name,) in rows]


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


def table_columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """{column: its SQL type} of ``table`` as the connection's search_path finds it ({}: no such table)."""
    return dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,)).fetchall())


def read_revision(conn: psycopg.Connection, schema: str) -> str | None:
    """The alembic revision stamped in ``schema`` (None: no alembic_version table, or empty)."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{_quoted(schema)}.alembic_version",)).fetchone()[0]
    if exists is None:
        return None
    row = conn.execute(sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))).fetchone()
    return row[0] if row else None


def alembic_revision(conn: psycopg.Connection) -> str | None:
    """The alembic revision of the Letta tables this connection reaches, wherever they are."""
    schema, _ = find_letta_schema(conn)
    return read_revision(conn, schema) if schema else None


def default_sequence(default: str | None) -> tuple[str, ...] | None:
    """The sequence a column default draws from, as its name's parts:
    ``nextval('letta."Seq"'::regclass)`` -> ``("letta", "Seq")``; None for any other default."""
    match = _NEXTVAL.search(default or "")
    if not match:
        return None
    text = match.group(1).replace("''", "'")
    return tuple(quoted.replace('""', '"') if quoted else plain for quoted, plain in _IDENTIFIER.findall(text))


def qualified_name(parts: tuple[str, ...]) -> str:
    """``("letta", "seq")`` -> ``"letta"."seq"``, as regclass and setval read it."""
    return ".".join(_quoted(p) for p in parts)


def sequence_next(conn: psycopg.Connection, sequence: tuple[str, ...]) -> int | None:
    """The value ``sequence`` hands out next (None: there is no such sequence). Never
    raises for a missing sequence, so it is safe inside a transaction."""
    if conn.execute("SELECT to_regclass(%s)", (qualified_name(sequence),)).fetchone()[0] is None:
        return None
    last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
        sql.Identifier(*sequence))).fetchone()
    return last + 1 if called else last


def sequence_lag(conn: psycopg.Connection, table: str, column: str, default: str | None,
                 schema: str | None = None) -> tuple[str, int, int] | None:
    """(sequence, its next value, the column's largest value) when the sequence ``column``'s
    ``default`` draws from would hand out a value already in use (after a bulk restore
    without setval every insert collides: a unique violation, HTTP 409); else None.
    ``schema`` None: names resolve through the connection's search_path."""
    parts = default_sequence(default)
    if parts is None:
        return None
    upcoming = sequence_next(conn, parts if len(parts) > 1 or schema is None else (schema, *parts))
    if upcoming is None:
        return None  # a missing sequence shows up when the server inserts
    where = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    (largest,) = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), where)).fetchone()
    if largest is None or upcoming > largest:
        return None
    return ".".join(parts), upcoming, largest


def _read_sequence_lag(conn: psycopg.Connection, live: LiveSchema) -> None:
    for table_name, table in live.tables.items():
        for column_name, column in table.columns.items():
            lag = sequence_lag(conn, table_name, column_name, column.default, live.schema)
            if lag:
                live.sequence_lag[f"{table_name}.{column_name}"] = lag


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
