"""Compare a live database with what a Letta version expects, or with another database.

``check_schema`` judges readiness: only differences that make Letta fail are problems
(a missing table, column, unique constraint, foreign key or enum value; a type or
nullability mismatch; a database-generated column without a default; a sequence behind
its column; the wrong alembic revision).  What the ORM and the migrations legitimately
disagree on (index names, indexes only migrations create, ORM-side server defaults the
migrations never added, extra objects) are notes, which never fail a check.

``diff_schemas`` is strict: two databases of the same version must be identical.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from ..errors import LettaCompatError, redact
from ..postgres.client import connect, shown_dsn
from ..versions import describe_revision, versions_at
from .expected import ExpectedSchema, expected_schema
from .inspect import LiveSchema, LiveTable, read_schema

_TYPE_FAMILIES = {
    "character varying": "string", "varchar": "string", "text": "string",
    "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp", "timestamp": "timestamp",
    "double precision": "float", "float": "float", "real": "float",
    "integer": "integer", "int": "integer", "bigint": "bigint", "smallint": "smallint",
}


def type_family(spelling: str) -> str:
    """``VARCHAR(20)``/``character varying`` -> ``string``: spellings of the ORM and of
    PostgreSQL's catalog for the same storage compare equal (lengths are not Letta's concern)."""
    text = spelling.strip().lower()
    array = text.endswith("[]")
    text = text.removesuffix("[]")
    if not text.startswith("vector"):  # the dimension of a vector column matters
        text = re.sub(r"\(.*\)", "", text).strip()
    family = _TYPE_FAMILIES.get(text, text)
    return family + "[]" if array else family


@dataclass(frozen=True)
class Finding:
    subject: str  # "runs.conversation_id", "conversations", "alembic revision"
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass
class DriftReport:
    server_version: str
    schema: str | None
    revision_found: str | None
    revision_expected: str
    tables_checked: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ready"] = self.ready
        return data


def check_database(dsn: str, version: str, cache: Path) -> DriftReport:
    """Is the database at ``dsn`` ready for Letta ``version``?"""
    expected = expected_schema(version, cache)  # an unknown version fails before connecting
    with connect(dsn) as conn:
        try:
            live = read_schema(conn)
        except psycopg.Error as exc:
            raise LettaCompatError(f"Reading the schema of {shown_dsn(dsn)!r} failed: "
                                   f"{redact(' '.join(str(exc).split()))}. The user needs read access "
                                   "to PostgreSQL's catalogs and to Letta's tables.") from None
    return check_schema(live, expected, graph=_revision_graph(live.revision, cache))


def _revision_graph(revision: str | None, cache: Path):
    """The alembic history, needed only to place a revision that is no release's head (a
    killed upgrade's) between the releases around it; None when it cannot be read."""
    from ..provision.alembic import RevisionGraph
    from ..provision.install import ensure_migration_scripts

    if revision is None or versions_at(revision):
        return None
    try:
        return RevisionGraph.from_scripts(ensure_migration_scripts(cache))
    except LettaCompatError:
        return None


def check_schema(live: LiveSchema, expected: ExpectedSchema, graph=None) -> DriftReport:
    report = DriftReport(expected.version, live.schema, live.revision, expected.revision)
    problem = lambda subject, message: report.problems.append(Finding(subject, message))  # noqa: E731
    note = lambda subject, message: report.notes.append(Finding(subject, message))  # noqa: E731
    if live.schema is None:
        problem("database", "no Letta tables (no alembic_version or agents table in any schema); "
                            f"run Letta's migrations (alembic upgrade {expected.revision}) first")
        return report
    if not live.on_search_path:
        note(f"schema {live.schema}", "not on this connection's search_path: a Letta server connecting "
                                      "with the same settings would not find its tables")
    if live.revision != expected.revision:
        problem("alembic revision", f"found {describe_revision(live.revision, graph)}, "
                                    f"expected {describe_revision(expected.revision)}")
    for name, table in sorted(expected.tables.items()):
        found = live.tables.get(name)
        if found is None:
            problem(name, "missing table")
            continue
        report.tables_checked += 1
        _check_columns(name, table, found, live, problem, note)
        _check_keys(name, table, found, problem, note)
    for name in sorted(set(live.tables) - set(expected.tables) - {"alembic_version"}):
        note(name, f"table not in Letta {expected.version}'s models (left by another version; harmless)")
    return report


def _check_columns(name: str, table: dict, found: LiveTable, live: LiveSchema, problem, note) -> None:
    for column, want in sorted(table["columns"].items()):
        subject = f"{name}.{column}"
        have = found.columns.get(column)
        if have is None:
            problem(subject, "missing")
            continue
        if type_family(have.type) != type_family(want["type"]):
            problem(subject, f"type {have.type}, expected {want['type']}")
        elif have.is_enum and want.get("enum_values"):
            absent = sorted(set(want["enum_values"]) - set(live.enums.get(have.type, [])))
            if absent:
                problem(subject, f"enum {have.type} lacks {', '.join(absent)} (writing those values fails)")
        if have.nullable and not want["nullable"]:
            problem(subject, "nullable, but NOT NULL in Letta's models (rows may hold NULLs Letta cannot read)")
        elif not have.nullable and want["nullable"] and have.default is None:
            problem(subject, "NOT NULL without a default, but optional in Letta's models (inserts without it fail)")
        if want["server_default"] == "fetched" and have.default is None:
            problem(subject, "no default (inserts will fail with NOT NULL → HTTP 409)" if not have.nullable
                    else "no default (new rows get NULL where the database must generate a value)")
        elif want["server_default"] and have.default is None:
            note(subject, f"no database default (Letta's models declare {want['server_default']}; "
                          "the migrations never add it)")
        if subject in live.sequence_lag:
            sequence, upcoming, largest = live.sequence_lag[subject]
            problem(subject, f"sequence {sequence} hands out {upcoming} next, but the column already holds "
                             f"values up to {largest} (inserts will fail with a unique violation → HTTP 409)")
    for column in sorted(set(found.columns) - set(table["columns"])):
        have = found.columns[column]
        if not have.nullable and have.default is None:
            problem(f"{name}.{column}", "NOT NULL without a default and unknown to Letta's models: "
                                        "every insert will fail")
        else:
            note(f"{name}.{column}", "column not in Letta's models (harmless)")


def _index_columns(columns: list[str]) -> tuple[str, ...]:
    return tuple(re.sub(r"\s+(ASC|DESC)$", "", c.strip(), flags=re.I) for c in columns)


def _check_keys(name: str, table: dict, found: LiveTable, problem, note) -> None:
    def present(columns) -> bool:
        return set(columns) <= set(found.columns)

    for index_name, index in sorted(found.indexes.items()):
        if not index.valid:  # Letta's CREATE INDEX CONCURRENTLY IF NOT EXISTS never rebuilds it
            (problem if index.unique else note)(
                f"{name}.{index_name}", "index is INVALID: a CREATE INDEX CONCURRENTLY was interrupted (a killed "
                "upgrade?); PostgreSQL keeps updating it but never uses it" + (
                    ", and rows written before it was interrupted were never checked for duplicates"
                    if index.unique else "") + f"; rebuild it: REINDEX INDEX CONCURRENTLY {index_name}")

    unique_sets = ({frozenset(k.columns) for k in found.constraints.values() if k.kind in "pu"}
                   | {frozenset(i.columns) for i in found.indexes.values() if i.unique})
    wanted_uniques = [(u["name"], tuple(u["columns"])) for u in table["uniques"]]
    wanted_uniques += [(i["name"], _index_columns(i["columns"])) for i in table["indexes"] if i["unique"]]
    for constraint, columns in wanted_uniques:
        if present(columns) and frozenset(columns) not in unique_sets:
            subject = f"{name}.{constraint or '+'.join(columns)}"
            problem(subject, f"missing unique constraint on ({', '.join(columns)}) "
                             "(duplicates go undetected; upserts fail)")

    index_columns = {i.columns for i in found.indexes.values()}
    for index in table["indexes"]:
        columns = _index_columns(index["columns"])
        if not index["unique"] and present(columns) and columns not in index_columns:
            note(f"{name}.{index['name']}", f"index on ({', '.join(columns)}) missing (queries may be slower)")
    declared = {_index_columns(i["columns"]) for i in table["indexes"]} | {tuple(u["columns"]) for u in table["uniques"]}
    for index_name, index in sorted(found.indexes.items()):
        if index.columns not in declared and not any(k.kind == "p" and k.columns == index.columns
                                                     for k in found.constraints.values()):
            note(f"{name}.{index_name}", "index not declared by Letta's models (created by a migration; harmless)")

    live_fks = {(k.columns, k.ref_table, k.ref_columns): k for k in found.constraints.values() if k.kind == "f"}
    for fk in table["foreign_keys"]:
        key = (tuple(fk["columns"]), fk["ref_table"], tuple(fk["ref_columns"]))
        if not present(fk["columns"]):
            continue
        subject = f"{name}.{'+'.join(fk['columns'])}"
        target = f"{fk['ref_table']}({', '.join(fk['ref_columns'])})"
        if key not in live_fks:
            problem(subject, f"missing foreign key to {target}")
        elif live_fks[key].ondelete != fk["ondelete"]:
            actual = live_fks[key].ondelete or "NO ACTION"
            # a database that refuses deletes Letta expects to cascade breaks deleting; the reverse does not
            (problem if actual in ("NO ACTION", "RESTRICT") else note)(
                subject, f"foreign key to {target} has ON DELETE {actual}, expected {fk['ondelete'] or 'NO ACTION'}")


def diff_schemas(a: LiveSchema, b: LiveSchema, a_label: str = "a", b_label: str = "b") -> list[str]:
    """Every difference between two live schemas, one readable line each (empty: identical)."""
    lines: list[str] = []

    def compare(subject: str, x, y) -> None:
        if x != y:
            lines.append(f"{subject}: {a_label} {x if x is not None else '-'} | {b_label} {y if y is not None else '-'}")

    compare("alembic revision", a.revision, b.revision)
    for table in sorted(set(a.tables) | set(b.tables)):
        ta, tb = a.tables.get(table), b.tables.get(table)
        if ta is None or tb is None:
            lines.append(f"{table}: table only in {a_label if tb is None else b_label}")
            continue
        for column in sorted(set(ta.columns) | set(tb.columns)):
            ca, cb = ta.columns.get(column), tb.columns.get(column)
            if ca is None or cb is None:
                lines.append(f"{table}.{column}: column only in {a_label if cb is None else b_label}")
                continue
            compare(f"{table}.{column} type", ca.type, cb.type)
            compare(f"{table}.{column} nullable", ca.nullable, cb.nullable)
            compare(f"{table}.{column} default", ca.default, cb.default)
        for kind, xa, xb in (("index", ta.indexes, tb.indexes), ("constraint", ta.constraints, tb.constraints)):
            for obj in sorted(set(xa) | set(xb)):
                compare(f"{table}.{obj} ({kind})", getattr(xa.get(obj), "definition", None),
                        getattr(xb.get(obj), "definition", None))
    for enum in sorted(set(a.enums) | set(b.enums)):
        compare(f"enum {enum}", sorted(a.enums.get(enum, [])) or None, sorted(b.enums.get(enum, [])) or None)
    return lines
