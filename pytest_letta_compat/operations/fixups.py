"""Idempotent SQL repairs for drift Letta's migrations do not repair, each detected first.

The first two concern ``messages.sequence_id``, which every new message draws from a sequence:
migration e991d2e3b428 creates ``message_seq_id`` and the column default
``nextval('message_seq_id'::regclass)``. A schema built another way has no default (every
insert fails NOT NULL: HTTP 409 at 0.16), the seed incident's hand fix used a sequence of
another name, and a bulk restore leaves the sequence behind the data (unique violations).
Either way Letta 0.16.2 may answer 200 yet keep none of the new messages.
The third moves secrets set on 0.11.x into the ``*_enc`` columns 0.16.x reads (found by
``letta-compat rehearse``: without it tool environment variables read as "<encrypted>").
The fourth gives back the run history Letta 0.12.0's migration 567e9fe06270 left behind: it
made a new, empty ``runs`` table and kept the old runs only as rows of ``jobs``.
The fifth gives MCP servers their tools back: 0.13.0's migration c6c43222e2de made the
``mcp_tools`` table the server reads them from, empty (letta#3353).
The sixth gives an archive emptied before 0.13.0 its agent's embedding back: that release's
migration f6cd5a1e519d gave every archive an embedding of its own, the first passage's, or for an
archive with none Letta's hosted ``letta-free`` (https://embeddings.letta.com/), which archival
memory then uses instead of the agent's own (letta#3210's symptom).
The seventh rebuilds indexes an interrupted ``CREATE INDEX CONCURRENTLY`` left INVALID (0.16.7's
migrations use ``IF NOT EXISTS``, so re-running them never does).
Everything runs in one transaction in whichever schema holds the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..errors import LettaCompatError
from ..schema.inspect import (default_sequence, invalid_indexes, qualified_name, sequence_lag, sequence_next,
                              table_columns)
from .database import LettaDatabase
from .inventory import mcp_tool_server, old_runs

SEQUENCE = "message_seq_id"  # the name migration e991d2e3b428 gives it


@dataclass(frozen=True)
class FixupResult:
    name: str
    drift: str | None  # what was wrong; None when nothing was
    applied: bool

    def __str__(self) -> str:
        if self.drift is None:
            return f"{self.name}: ok, nothing to do"
        return f"{self.name}: {self.drift} -> {'repaired' if self.applied else 'would repair (dry run)'}"


def _sequence_id_default(conn: psycopg.Connection) -> tuple[bool, str | None]:
    """(does messages.sequence_id exist, its default expression or None)."""
    row = conn.execute(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = 'messages'::regclass AND a.attname = 'sequence_id' AND NOT a.attisdropped").fetchone()
    return (False, None) if row is None else (True, row[0])


def _largest_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(sequence_id), 0) FROM messages").fetchone()[0]


class SequenceDefault:
    name = "messages.sequence_id default"

    def detect(self, conn: psycopg.Connection) -> str | None:
        exists, default = _sequence_id_default(conn)
        sequence = default_sequence(default)
        if not exists or sequence == (SEQUENCE,):
            return None
        if sequence is None:
            return ("messages.sequence_id has no default, so no new message can be stored (NOT NULL violation: "
                    "Letta answers 409 or 500, or 200 while silently dropping the message)")
        return (f"messages.sequence_id draws from sequence {'.'.join(sequence)!r}, not Letta's {SEQUENCE!r} "
                "(a hand-made repair)")

    def apply(self, conn: psycopg.Connection) -> None:
        old = default_sequence(_sequence_id_default(conn)[1])
        conn.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
        conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(sql.Identifier(SEQUENCE)))
        floor = max(_largest_id(conn), (sequence_next(conn, old) or 1) - 1 if old else 0)
        upcoming = max(sequence_next(conn, (SEQUENCE,)) or 1, floor + 1)
        conn.execute("SELECT setval(%s, %s, false)", (qualified_name((SEQUENCE,)), upcoming))
        conn.execute(sql.SQL("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval({}::regclass)").format(
            sql.Literal(SEQUENCE)))
        if old:
            try:
                with conn.transaction():  # a savepoint: keep a sequence something else still uses
                    conn.execute(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sql.Identifier(*old)))
            except psycopg.errors.DependentObjectsStillExist:
                pass


class SequenceBehind:
    name = "message_seq_id position"

    def detect(self, conn: psycopg.Connection) -> str | None:
        lag = sequence_lag(conn, "messages", "sequence_id", _sequence_id_default(conn)[1])
        if lag is None:
            return None
        sequence, upcoming, largest = lag
        return (f"sequence {sequence!r} would hand out {upcoming}, but messages already use ids up to {largest} "
                "(after a bulk restore): new messages collide and are not stored")

    def apply(self, conn: psycopg.Connection) -> None:
        sequence = default_sequence(_sequence_id_default(conn)[1])
        conn.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("SELECT setval(%s, %s, false)", (qualified_name(sequence), _largest_id(conn) + 1))


# Secrets 0.16.x reads only from the ``*_enc`` column. Migrations 8149a781ac1b and eff256d296cb
# fill it only when LETTA_ENCRYPTION_KEY is set at migration time, and no migration ever fills
# agent_environment_variables.value_enc: values set on 0.11.x then read as "<encrypted>" (tools
# run without them). Letta itself, when no key is configured, stores the plaintext in the
# ``_enc`` column (Secret.from_plaintext) and reads it back as is; with a key configured it
# still returns a value that does not decrypt and does not look encrypted as plaintext.
PLAINTEXT_SECRETS = (
    ("agent_environment_variables", "value", "value_enc"),
    ("sandbox_environment_variables", "value", "value_enc"),
    ("providers", "api_key", "api_key_enc"),
    ("providers", "access_key", "access_key_enc"),
    ("mcp_server", "token", "token_enc"),
    ("mcp_server", "custom_headers", "custom_headers_enc"),
    ("mcp_oauth", "access_token", "access_token_enc"),
    ("mcp_oauth", "refresh_token", "refresh_token_enc"),
    ("mcp_oauth", "client_secret", "client_secret_enc"),
)


def _stranded_secrets(conn: psycopg.Connection) -> list[tuple[str, str, str, int]]:
    """(table, plain column, _enc column, rows) where a value sits only in the plain column."""
    found = []
    for table, plain, encrypted in PLAINTEXT_SECRETS:
        if not {plain, encrypted} <= table_columns(conn, table).keys():
            continue
        (count,) = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL AND {} IS NOT NULL AND {}::text <> ''").format(
            sql.Identifier(table), sql.Identifier(encrypted), sql.Identifier(plain), sql.Identifier(plain))).fetchone()
        if count:
            found.append((table, plain, encrypted, count))
    return found


class PlaintextSecrets:
    name = "secrets only in plaintext columns"

    def detect(self, conn: psycopg.Connection) -> str | None:
        found = _stranded_secrets(conn)
        if not found:
            return None
        where = ", ".join(f"{count} in {table}.{plain}" for table, plain, _, count in found)
        return (f"{sum(f[3] for f in found)} secret value(s) are only in the plaintext columns Letta 0.16.x no longer "
                f"reads ({where}): the API returns '<encrypted>' and tools run without them")

    def apply(self, conn: psycopg.Connection) -> None:
        for table, plain, encrypted, _ in _stranded_secrets(conn):
            conn.execute(sql.SQL("UPDATE {} SET {} = {}::text WHERE {} IS NULL AND {} IS NOT NULL AND {}::text <> ''").format(
                sql.Identifier(table), sql.Identifier(encrypted), sql.Identifier(plain), sql.Identifier(encrypted),
                sql.Identifier(plain), sql.Identifier(plain)))


class InvalidIndexes:
    name = "indexes left INVALID"

    def detect(self, conn: psycopg.Connection) -> str | None:
        found = invalid_indexes(conn)
        if not found:
            return None
        return (f"{', '.join(found)}: INVALID after an interrupted CREATE INDEX CONCURRENTLY "
                "(PostgreSQL never uses it; Letta's IF NOT EXISTS migrations never rebuild it)")

    def apply(self, conn: psycopg.Connection) -> None:
        for index in invalid_indexes(conn):
            try:
                with conn.transaction():  # a savepoint: name the index whose rebuild fails
                    conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier(index)))  # search_path: Letta's schema
            except psycopg.errors.UniqueViolation as exc:
                raise LettaCompatError(
                    f"Rebuilding the unique index {index} failed: rows written while it was INVALID are duplicates "
                    f"({' '.join(str(exc).split())}). Nothing was changed; remove the duplicate rows, then re-run.") from None


# Up to 0.11.x a run was a row of ``jobs`` (job_type 'run', its agent in metadata_.agent_id).
# Migration 567e9fe06270 (0.12.0) creates an empty ``runs`` table, drops ``agents_runs`` and
# ``job_messages`` and the ``job_id`` of steps and step_metrics, and copies nothing: the server
# then lists no run from before the upgrade. The rows are still in ``jobs``; copying them into
# ``runs`` gives the history back (id, status, stop reason, times, request config). Their links
# to steps and messages went with the dropped columns: the backup taken before keeps them.
RUN_STATUSES = {"pending": "created", "expired": "cancelled"}  # JobStatus values RunStatus does not have
_RUN_FIELDS = {"status", "agent_id", "organization_id"}  # computed below, never copied as they are


def _runs_left_in_jobs(conn: psycopg.Connection) -> sql.Composable | None:
    """FROM ... WHERE ... of the old runs not in ``runs`` whose agent is still there (None: not this schema)."""
    if not table_columns(conn, "runs") or not {"job_type", "metadata_"} <= table_columns(conn, "jobs").keys():
        return None
    agent, is_run = old_runs("j.")
    return sql.SQL(f"FROM jobs j JOIN agents a ON a.id = {agent} WHERE {is_run} "
                   "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = j.id)")


class RunsFromJobs:
    name = "run history"

    def detect(self, conn: psycopg.Connection) -> str | None:
        source = _runs_left_in_jobs(conn)
        if source is None:
            return None
        runs, agents = conn.execute(sql.SQL("SELECT count(*), count(DISTINCT a.id) {}").format(source)).fetchone()
        if not runs:
            return None
        return (f"{runs} run(s) of {agents} agent(s) are only in the old jobs table: Letta 0.12.0's migration "
                "567e9fe06270 made a new, empty runs table, so the server lists none of them (their links to steps "
                "and messages were dropped by that migration; the backup taken before it keeps them)")

    def apply(self, conn: psycopg.Connection) -> None:
        source = _runs_left_in_jobs(conn)
        runs, jobs = table_columns(conn, "runs"), table_columns(conn, "jobs")
        shared = [c for c in runs if c in jobs and c not in _RUN_FIELDS]
        status = sql.SQL("CASE j.status {} ELSE j.status END").format(sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(old), sql.Literal(new)) for old, new in RUN_STATUSES.items()))
        columns = [sql.Identifier(c) for c in (*shared, "status", "agent_id", "organization_id")]
        values = [sql.SQL("j.{}::{}").format(sql.Identifier(c), sql.SQL(runs[c])) for c in shared]
        values += [status, sql.SQL("a.id"), sql.SQL("a.organization_id")]
        conn.execute(sql.SQL("INSERT INTO runs ({}) SELECT {} {}").format(
            sql.SQL(", ").join(columns), sql.SQL(", ").join(values), source))


# Letta 0.13.0's migration c6c43222e2de made ``mcp_tools`` ({MCP server, tool} pairs), empty; from then on
# ``GET /v1/mcp-servers/{id}/tools`` lists only the tools found there, and a refresh only updates the
# tools it already has, so an MCP server registered before lists 0 tools for good (letta#3353). Each
# such tool still names its server in ``metadata_['mcp']['server_id']``, as every release writes it.
_MCP_TOOLS_UNLISTED = sql.SQL(
    f"FROM tools t JOIN mcp_server s ON s.id = {mcp_tool_server('t.')} "
    "WHERE NOT t.is_deleted AND NOT s.is_deleted "
    "AND NOT EXISTS (SELECT 1 FROM mcp_tools m WHERE m.tool_id = t.id AND m.mcp_server_id = s.id)")


class McpToolMappings:
    name = "MCP server tools"

    def detect(self, conn: psycopg.Connection) -> str | None:
        if not table_columns(conn, "mcp_tools") or not table_columns(conn, "mcp_server"):
            return None
        tools, servers = conn.execute(
            sql.SQL("SELECT count(*), count(DISTINCT s.id) {}").format(_MCP_TOOLS_UNLISTED)).fetchone()
        if not tools:
            return None
        return (f"{tools} tool(s) of {servers} MCP server(s) are not in mcp_tools: Letta 0.13.0's migration "
                "c6c43222e2de made that table empty, so the server lists 0 tools for those MCP servers and a refresh "
                "does not add them back (letta#3353)")

    def apply(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL(
            "INSERT INTO mcp_tools (id, mcp_server_id, tool_id, organization_id) "
            "SELECT 'mcp-tool-mapping-' || gen_random_uuid(), s.id, t.id, t.organization_id {}").format(
                _MCP_TOOLS_UNLISTED))


# the agents' own embedding of an archive the backfill gave letta-free, where they agree on one
_OWN_EMBEDDING = sql.SQL(
    "SELECT min(ag.embedding_config::text)::json FROM archives_agents aa JOIN agents ag ON ag.id = aa.agent_id "
    "WHERE aa.archive_id = a.id AND NOT ag.is_deleted AND ag.embedding_config::jsonb->>'embedding_model' <> 'letta-free' "
    "HAVING count(DISTINCT ag.embedding_config::jsonb) = 1")
_ARCHIVES_ON_THE_BACKFILL_DEFAULT = sql.SQL(
    "FROM archives a WHERE NOT a.is_deleted AND a.embedding_config::jsonb->>'embedding_model' = 'letta-free' "
    "AND a.embedding_config::jsonb->>'embedding_endpoint' = 'https://embeddings.letta.com/' "
    "AND NOT EXISTS (SELECT 1 FROM archival_passages p WHERE p.archive_id = a.id AND NOT p.is_deleted) "
    "AND ({}) IS NOT NULL").format(_OWN_EMBEDDING)


class ArchiveEmbedding:
    name = "archive embedding"

    def detect(self, conn: psycopg.Connection) -> str | None:
        if "embedding_config" not in table_columns(conn, "archives"):
            return None
        archives = conn.execute(sql.SQL("SELECT count(*) {}").format(_ARCHIVES_ON_THE_BACKFILL_DEFAULT)).fetchone()[0]
        if not archives:
            return None
        return (f"{archives} empty archive(s) embed with Letta's hosted letta-free, not their agent's own embedding: "
                "Letta 0.13.0's migration f6cd5a1e519d gave an archive with no passage that default, so archival "
                "insert and search call https://embeddings.letta.com/ (letta#3210's symptom)")

    def apply(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("UPDATE archives a SET embedding_config = ({}) WHERE a.id IN (SELECT a.id {})").format(
            _OWN_EMBEDDING, _ARCHIVES_ON_THE_BACKFILL_DEFAULT))


FIXUPS = (SequenceDefault(), SequenceBehind(), PlaintextSecrets(), RunsFromJobs(), McpToolMappings(),
          ArchiveEmbedding(), InvalidIndexes())


def run_fixups(database: LettaDatabase, *, apply: bool) -> list[FixupResult]:
    """Detect every known drift and, with ``apply``, repair it; a second run finds nothing."""
    results = []
    with database.connect() as conn:
        schema = database.layout(conn).schema
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            for fixup in FIXUPS:
                drift = fixup.detect(conn)
                if drift and apply:
                    fixup.apply(conn)
                results.append(FixupResult(fixup.name, drift, bool(drift and apply)))
    return results
