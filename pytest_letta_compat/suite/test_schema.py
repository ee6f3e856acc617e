"""Per matrix entry: each version's database matches what that version's own models expect,
and an upgrade in place yields exactly the schema of a fresh database of the new version."""

from __future__ import annotations

import uuid

import pytest
from psycopg import sql

from pytest_letta_compat import versions
from pytest_letta_compat.rest.agents import create_agent, send_message
from pytest_letta_compat.schema.compare import check_database, diff_schemas
from pytest_letta_compat.schema.expected import expected_schema
from pytest_letta_compat.schema.inspect import read_schema

pytestmark = pytest.mark.letta_check("schema")


def _problems(report) -> str:
    return "\n".join(f"  {finding}" for finding in report.problems)


def test_fresh_database_matches_the_versions_models(letta_server_entry, letta_backend):
    version = letta_server_entry.version
    name = letta_backend.unique_name("schema_fresh", version)
    letta_backend.create_database(name, version=version)
    try:
        report = check_database(letta_backend.dsn(name), version, letta_backend.cache)
    finally:
        letta_backend.drop_database(name)
    assert report.problems == [], f"a fresh {version} database fails its own check:\n{_problems(report)}"
    assert report.schema == "letta"
    assert report.revision_found == versions.server_release(version).alembic_head
    assert report.tables_checked == len(expected_schema(version, letta_backend.cache).tables)


def test_database_laid_out_in_public_is_found_and_judged(letta_server_entry, letta_backend):
    """An operator's own PostgreSQL without init.sql keeps Letta's tables in ``public``."""
    version = letta_server_entry.version
    name = letta_backend.unique_name("schema_public", version)
    letta_backend.create_database(name, version=version)
    try:
        with letta_backend.connect(name) as conn:
            conn.execute("ALTER SCHEMA letta RENAME TO public")
            conn.execute(sql.SQL("ALTER DATABASE {} RESET search_path").format(sql.Identifier(name)))
        report = check_database(letta_backend.dsn(name), version, letta_backend.cache)
    finally:
        letta_backend.drop_database(name)
    assert report.schema == "public"
    assert report.problems == [], _problems(report)


def test_running_servers_database_stays_ready(letta_server, letta_client, letta_backend, letta_fake_llm):
    """After the server has started (base tools upserted) and stored a conversation."""
    agent = create_agent(letta_client, f"schema-live-{uuid.uuid4().hex[:8]}", letta_fake_llm.base_url)
    send_message(letta_client, agent["id"], "a row for every table a message touches")
    report = check_database(letta_server.dsn, letta_server.version, letta_backend.cache)
    assert report.problems == [], _problems(report)


def test_upgraded_database_is_identical_to_a_fresh_one(letta_upgrade_entry, letta_upgrade_path, letta_backend):
    """The path's database, seeded by the old server (agents, messages, an archival passage: data
    for the backfills to run over) and upgraded as ``letta-compat upgrade --apply`` does."""
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    upgraded, fresh = letta_upgrade_path.upgraded, letta_backend.unique_name("schema_fresh_target", old, new)
    letta_backend.create_database(fresh, version=new)
    try:
        with letta_backend.connect(upgraded) as a, letta_backend.connect(fresh) as b:
            upgraded_schema, fresh_schema = read_schema(a), read_schema(b)
            messages_after = a.execute("SELECT id, sequence_id FROM messages ORDER BY sequence_id").fetchall()
        report = check_database(letta_backend.dsn(upgraded), new, letta_backend.cache)
    finally:
        letta_backend.drop_database(fresh)
    diff = diff_schemas(upgraded_schema, fresh_schema, f"upgraded from {old}", f"fresh {new}")
    assert not diff, f"{old} upgraded in place differs from a fresh {new} database:\n" + "\n".join(diff)
    assert report.problems == [], _problems(report)
    assert messages_after == letta_upgrade_path.messages_before, "the migrations changed or lost stored messages"
