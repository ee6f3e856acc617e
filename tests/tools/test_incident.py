"""The seed incident as a regression test: a half-applied upgrade must be caught before
the new server runs on it, by the real ``letta-compat schema check`` command.

A 0.11.3 database with data, migrated only up to 0.16.1's head (what an interrupted or
older image's migration leaves), judged for 0.16.2; then the 500s that server really gives.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid

import pytest

from pytest_letta_compat import versions
from pytest_letta_compat.rest.agents import create_agent, send_message
from pytest_letta_compat.provision.alembic import upgrade_database
from pytest_letta_compat.provision.procs import free_port

pytestmark = pytest.mark.letta_check("schema")

OLD, NEW = "0.11.3", "0.16.2"
HALF_WAY = versions.server_release("0.16.1").alembic_head  # 39577145c45d
INCIDENT_COLUMNS = ("runs.conversation_id", "messages.conversation_id", "steps.request_id")


@pytest.fixture(scope="module")
def incident_versions(letta_matrix):
    missing = {OLD, NEW} - set(letta_matrix.server_versions() if letta_matrix else ())
    if missing:
        pytest.skip(f"the incident path needs Letta {OLD} and {NEW} in the matrix "
                    f"(missing: {', '.join(sorted(missing))})")


def schema_check(cache, dsn: str, version: str, *extra: str) -> subprocess.CompletedProcess:
    """``letta-compat schema check`` as an operator runs it (a separate process)."""
    return subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir", str(cache),
                           "schema", "check", "--dsn", dsn, "--server-version", version, *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def half_migrated(incident_versions, letta_backend, letta_server_factory, letta_fake_llm):
    """A 0.11.3 database holding an agent and its messages, migrated to 39577145c45d only."""
    name = "incident_half_migrated"
    letta_backend.create_database(name, version=OLD)
    old = letta_server_factory(OLD, database=name)
    with old.client() as client:
        agent = create_agent(client, f"incident-{uuid.uuid4().hex[:8]}", letta_fake_llm.base_url)
        send_message(client, agent["id"], "written by 0.11.3 before the upgrade")
    old.stop()
    upgrade_database(letta_backend.dsn(name), HALF_WAY, letta_backend.cache)
    yield name, agent["id"]
    letta_backend.drop_database(name)


def test_half_migrated_database_is_not_ready_for_0_16_2(half_migrated, letta_backend):
    name, _ = half_migrated
    dsn = letta_backend.dsn(name)
    result = schema_check(letta_backend.cache, dsn, NEW)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for column in INCIDENT_COLUMNS:
        assert f"  {column}: missing" in lines, result.stdout
    assert f"  alembic revision: found {HALF_WAY} (the schema of Letta 0.16.1), expected " \
           f"{versions.server_release(NEW).alembic_head} (the schema of Letta {NEW})" in lines
    password = dsn.split(":")[2].split("@")[0]
    assert password not in result.stdout + result.stderr

    report = json.loads(schema_check(letta_backend.cache, dsn, NEW, "--json").stdout)
    assert report["ready"] is False and report["revision_found"] == HALF_WAY
    assert set(INCIDENT_COLUMNS) <= {p["subject"] for p in report["problems"]}


def test_0_16_2_on_the_half_migrated_database_fails_like_the_incident(half_migrated, letta_server_factory,
                                                                      letta_backend):
    """It starts and answers health, then the requests Letta Code makes fail with 500."""
    if letta_backend.name != "native":
        pytest.skip("a Letta container migrates at every start (startup.sh), so it never serves a half-migrated "
                    "database: see test_the_images_start_up_migration_heals_the_half_migrated_database")
    name, agent_id = half_migrated
    server = letta_server_factory(NEW, database=name)
    try:
        # after an unhandled error uvicorn drops the connection: no keep-alive between requests
        with server.client(headers={"Connection": "close"}) as client:
            assert client.get("/v1/health/").json()["version"] == NEW
            assert client.get(f"/v1/agents/{agent_id}").status_code == 200
            assert client.get(f"/v1/agents/{agent_id}/messages").status_code == 500
            sent = client.post(f"/v1/agents/{agent_id}/messages",
                               json={"messages": [{"role": "user", "content": "after the upgrade"}]})
            assert sent.status_code == 500
    finally:
        server.stop()
    log = server.log_tail(2000)
    assert "conversation_id does not exist" in log or "request_id does not exist" in log


def test_the_images_start_up_migration_heals_the_half_migrated_database(half_migrated, letta_server_factory,
                                                                         letta_backend):
    """What `docker compose up` with the pinned 0.16.2 image does to the incident's database."""
    if letta_backend.name != "docker":
        pytest.skip("a pip-installed server never migrates: that is the native backend's incident test")
    name, agent_id = half_migrated
    server = letta_server_factory(NEW, database=name)
    try:
        with server.client() as client:
            assert client.get(f"/v1/agents/{agent_id}/messages").status_code == 200
        with server.connect() as conn:
            (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert revision == versions.server_release(NEW).alembic_head
    finally:
        server.stop()


def test_dropped_sequence_id_default_is_reported(incident_versions, letta_backend):
    """What a schema built by the ORM (create_all) lacks: every insert fails, HTTP 409."""
    name = "incident_no_sequence_default"
    letta_backend.create_database(name, version=NEW)
    try:
        with letta_backend.connect(name) as conn:
            conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id DROP DEFAULT")
        result = schema_check(letta_backend.cache, letta_backend.dsn(name), NEW)
    finally:
        letta_backend.drop_database(name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "  messages.sequence_id: no default (inserts will fail with NOT NULL → HTTP 409)" in result.stdout
    assert "alembic revision" not in result.stdout  # the revision is right; only the default is gone


def test_fully_migrated_database_is_ready(incident_versions, letta_backend):
    name = "incident_fully_migrated"
    letta_backend.create_database(name, version=NEW)
    try:
        result = schema_check(letta_backend.cache, letta_backend.dsn(name), NEW)
    finally:
        letta_backend.drop_database(name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"is ready for Letta {NEW}" in result.stdout


@pytest.mark.parametrize("case", ["unreachable", "unknown-version"])
def test_bad_input_is_one_line_without_traceback_or_password(case, tmp_path, letta_backend):
    password = secrets.token_urlsafe(12)
    dsn = f"postgresql://letta:{password}@127.0.0.1:{free_port()}/letta"
    version = NEW if case == "unreachable" else "0.99.0"
    result = schema_check(letta_backend.cache, dsn, version)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("letta-compat: error: ")
    assert "Traceback" not in result.stderr and password not in result.stderr
    expected = "Cannot connect to the database" if case == "unreachable" else "'0.99.0' is not a Letta server release this tool knows"
    assert expected in result.stderr
