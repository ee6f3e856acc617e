"""The rehearsal's first stage: what the operator's dump is (its format, the schema its tables
live in, the roles a plain script names, its alembic revision), read once without restoring
it, and where that revision stands among Letta's releases: which targets it can go to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import versions
from ..errors import LettaCompatError
from ..postgres.client import run_pg_tool
from ..provision.alembic import RevisionGraph
from ..versions import describe_revision, versions_at
from .database import archive_schema


@dataclass(frozen=True)
class DumpFacts:
    path: Path
    format: str  # "custom" (pg_dump -Fc) or "plain" (SQL)
    schema: str  # where its tables live: "letta" (init.sql's layout) or "public"
    roles: frozenset[str]  # the roles a plain script's OWNER TO / GRANT name
    revision: str | None


@dataclass(frozen=True)
class Standing:
    """Where the source's alembic revision stands among the releases."""
    where: str  # the dump's path or the DSN, password masked
    revision: str
    releases: tuple[str, ...]  # the releases whose head it is (none: a half-applied upgrade)
    state: str  # "release head" or "half-applied upgrade"
    described: str


def read_dump(path: Path) -> DumpFacts:
    """Everything the rehearsal needs to know of a dump before it restores it; bad input is one line."""
    kind = dump_format(path)
    if kind == "custom":
        schema, roles = archive_schema(path), set()
    else:
        schema, roles = plain_dump_facts(path)
    return DumpFacts(path, kind, schema, frozenset(roles), dump_revision(path, kind))


def where_it_stands(revision: str | None, graph: RevisionGraph, where: str) -> Standing:
    if revision is None:
        raise LettaCompatError(f"{where} has no alembic revision (an empty alembic_version table): it is not a "
                               "database Letta's migrations created.")
    if revision not in graph.parents:
        raise LettaCompatError(f"{where} is at alembic revision {revision}, which no Letta release's migrations "
                               f"know (the letta-{versions.MIGRATIONS_SOURCE} scripts hold every release's): it "
                               "is not a Letta database, or one changed by hand.")
    releases = tuple(versions_at(revision))
    return Standing(where, revision, releases, "release head" if releases else "half-applied upgrade",
                    describe_revision(revision, graph))


def reachable_targets(targets: list[str], standing: Standing, graph: RevisionGraph) -> tuple[list[str], list[str]]:
    """(the targets the source can be upgraded to, the older ones it skips); none reachable is one line."""
    reachable, skipped = [], []
    for target in targets:
        head = versions.server_release(target).alembic_head
        (reachable if standing.revision in graph.ancestors(head) else skipped).append(target)
    if not reachable:
        raise LettaCompatError(f"The dump is at {standing.described}, newer than every --to "
                               f"({', '.join(targets)}): a rehearsal only goes forward. Give a later release.")
    return reachable, skipped


_PLAIN_ALEMBIC = re.compile(r"^CREATE TABLE (?:(\S+)\.)?alembic_version \(", re.M)
_PLAIN_ROLES = re.compile(r"(?:OWNER TO|GRANT .* TO|AUTHORIZATION) (\"[^\"]+\"|[A-Za-z_][\w$]*)")


def dump_format(path: Path) -> str:
    """``custom`` (pg_dump -Fc) or ``plain`` (SQL); anything else is refused in one line."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"PGDMP"):
        return "custom"
    if head.startswith(b"\x1f\x8b"):
        raise LettaCompatError(f"--dump {path} is gzip-compressed: gunzip it first (or take it with "
                               "`pg_dump -Fc`, which compresses by itself).")
    text = head.decode("utf-8", "replace")
    if "PostgreSQL database dump" in text or re.search(r"^(SET|CREATE|COPY|INSERT) ", text, re.M):
        return "plain"
    raise LettaCompatError(f"--dump {path} is not a PostgreSQL dump (neither pg_dump's custom format nor plain "
                           "SQL). Take one with `docker compose exec -T letta_db pg_dump -U letta -Fc letta > letta.dump`.")


def plain_dump_facts(path: Path) -> tuple[str, set[str]]:
    """(schema of alembic_version, roles the script names) of a plain SQL dump, read as a stream."""
    schema, roles = None, set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("CREATE TABLE") and schema is None:
                match = _PLAIN_ALEMBIC.match(line)
                if match:
                    schema = match.group(1) or "public"
            elif "OWNER TO" in line or line.startswith(("GRANT", "CREATE SCHEMA")):
                roles.update(r.strip('"') for r in _PLAIN_ROLES.findall(line))
    if schema is None:
        raise LettaCompatError(f"--dump {path} holds no alembic_version table: it is not a dump of a Letta database.")
    return schema, roles - {"PUBLIC", "public"}


_COPY_ALEMBIC = re.compile(r"^COPY (?:\S+\.)?alembic_version \(version_num\) FROM stdin;$")
_INSERT_ALEMBIC = re.compile(r"^INSERT INTO (?:\S+\.)?alembic_version (?:\(version_num\) )?VALUES \('([^']+)'\);$")


def dump_revision(path: Path, kind: str) -> str | None:
    """The alembic revision a dump holds, read without restoring it (pg_restore -a -t for the
    custom format; a streamed scan of a plain script)."""
    if kind == "custom":
        try:
            text = run_pg_tool("pg_restore", ["-a", "-t", "alembic_version", "-f", "-", str(path)])
        except LettaCompatError as exc:
            raise LettaCompatError(f"--dump {path} cannot be read: {str(exc).splitlines()[0][:300]}") from None
        lines = iter(text.splitlines())
    else:
        lines = open(path, encoding="utf-8", errors="replace")
    try:
        for line in lines:
            line = line.rstrip("\n")
            if _COPY_ALEMBIC.match(line):
                value = next(lines, "\\.").rstrip("\n")
                return None if value == "\\." else value.strip()
            match = _INSERT_ALEMBIC.match(line)
            if match:
                return match.group(1)
    finally:
        if kind != "custom":
            lines.close()
    return None
