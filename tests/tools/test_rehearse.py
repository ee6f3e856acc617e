"""``letta-compat rehearse`` on databases this suite makes itself, run as an operator runs it.

A 0.11.3 database seeded through the real 0.11.3 API: an agent with a long history (> 120
stored messages), a "/" name and a non-ASCII name set by PATCH, a custom tool, archival
memory, and a tool environment variable. Its dump is rehearsed to real targets; the
half-applied incident database (stopped between 0.16.1 and 0.16.2, no sequence_id default) too;
bad inputs exit 2.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_letta_compat import versions
from pytest_letta_compat.postgres.client import pg_dump, run_pg_tool
from pytest_letta_compat.provision.alembic import upgrade_database
from pytest_letta_compat.rest.agents import create_agent, send_message

pytestmark = pytest.mark.letta_check("upgrade")

OLD = "0.11.3"
HALF_WAY = "ee2b43eea55e"  # 0.16.2's first revision: steps.request_id, but no conversations yet
SECRET = "tok-" + secrets.token_hex(12)  # the tool env var's value: must never be printed or written
SLASH_NAME, UNICODE_NAME = "AI/ML Expert", "Café Ørsted 東京"
TOOL_SOURCE = '''def roll_dice(sides: int) -> str:
    """Roll a die.

    Args:
        sides (int): how many sides the die has

    Returns:
        str: the number rolled
    """
    return str(sides)
'''


def rehearse(cache: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``letta-compat rehearse`` as a separate process, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir", str(cache),
                           "rehearse", *args], capture_output=True, text=True, timeout=timeout)


def duplicate_history(conn, agent_id: str, times: int) -> None:
    """Copy an agent's stored messages ``times`` times (new ids): a long history without
    minutes of real turns. The rows are the server's own, only their ids are new."""
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' "
        "AND table_schema = current_schema() AND column_name NOT IN ('id', 'sequence_id') ORDER BY ordinal_position")]
    listed = ", ".join(f'"{c}"' for c in columns)
    for _ in range(times):
        conn.execute(f"INSERT INTO messages (id, {listed}) SELECT 'message-' || gen_random_uuid(), {listed} "
                     "FROM messages WHERE agent_id = %s AND role <> 'system'", (agent_id,))


@pytest.fixture(scope="module")
def seeded(letta_postgres, letta_server_factory, fake_llm, tmp_path_factory):
    """(database name, agents by role) of a seeded 0.11.3 database, and its custom-format dump."""
    name = f"rehearse_seed_{uuid.uuid4().hex[:6]}"
    letta_postgres.create_database(name, version=OLD)
    server = letta_server_factory(OLD, database=name)
    agents = {}
    with server.client() as client:
        long = create_agent(client, "long-history", fake_llm.base_url)
        for turn in range(6):
            send_message(client, long["id"], f"turn {turn} before the upgrade")
        agents["long"] = long["id"]
        for key, final in (("slash", SLASH_NAME), ("unicode", UNICODE_NAME)):
            agent = create_agent(client, f"seed-{key}", fake_llm.base_url)
            client.patch(f"/v1/agents/{agent['id']}", json={"name": final}).raise_for_status()
            agents[key] = agent["id"]
        tool = client.post("/v1/tools/", json={"source_code": TOOL_SOURCE})
        tool.raise_for_status()
        secretive = create_agent(client, "tool-user", fake_llm.base_url,
                                 tool_exec_environment_variables={"WEATHER_TOKEN": SECRET})
        client.patch(f"/v1/agents/{secretive['id']}/tools/attach/{tool.json()['id']}").raise_for_status()
        for text in ("the launch is on Tuesday", "the password hint is a cat's name"):
            client.post(f"/v1/agents/{secretive['id']}/archival-memory", json={"text": text}).raise_for_status()
        agents["tools"] = secretive["id"]
    server.stop()
    with letta_postgres.connect(name) as conn:
        duplicate_history(conn, agents["long"], 6)
        (count,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                (agents["long"],)).fetchone()
    assert count > 120, count
    dump = tmp_path_factory.mktemp("rehearse") / "letta-0.11.3.dump"
    pg_dump(letta_postgres.dsn(name), dump)
    yield name, agents, dump
    letta_postgres.drop_database(name)


def by_name(path: dict) -> dict[str, dict]:
    return {agent["name"]: agent for agent in path["agents"]}


def no_secret_anywhere(result: subprocess.CompletedProcess, *files: Path) -> None:
    for text in (result.stdout, result.stderr, *(f.read_text() for f in files if f.exists())):
        assert SECRET not in text
        assert hashlib.sha256(SECRET.encode()).hexdigest() not in text


def test_a_0_11_3_dump_comes_through_to_0_16_8_and_the_image_path_loses_the_tool_secret(seeded, letta_postgres,
                                                                                       tmp_path):
    _, agents, dump = seeded
    report_path = tmp_path / "rehearsal.json"
    result = rehearse(letta_postgres.cache, "--dump", str(dump), "--to", "0.16.8", "--report", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    no_secret_anywhere(result, report_path)
    report = json.loads(report_path.read_text())
    source = report["source"]
    assert source["revision"] == versions.server_release(OLD).alembic_head and OLD in source["releases"]
    assert source["state"] == "release head" and source["schema"] == "letta" and source["format"] == "custom"
    assert source["inventory_via"] == f"api {OLD}"
    assert any("the fake LLM" in line for line in source["redirected"])
    compat = report["targets"][0]["paths"]["letta-compat"]
    assert report["targets"][0]["version"] == "0.16.8" and compat["verdict"] == "intact"
    named = by_name(compat)
    assert {SLASH_NAME, UNICODE_NAME, "long-history", "tool-user"} <= set(named)
    assert all(agent["verdict"] == "intact" for agent in compat["agents"])
    long = named["long-history"]
    assert long["before"]["stored_messages"] > 120
    assert long["after"]["stored_messages"] == long["before"]["stored_messages"]
    tool_user = named["tool-user"]
    assert "roll_dice" in tool_user["after"]["tools"] and tool_user["after"]["archival_passages"] == 2
    assert tool_user["before"]["tool_env_vars"] == {"WEATHER_TOKEN": "readable"}
    assert tool_user["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "readable"}
    assert any(f.startswith("secrets only in plaintext columns: 1 secret") and "repaired" in f for f in compat["fixups"])
    assert all(e["ok"] for e in compat["exchange"]) and len(compat["exchange"]) == 3
    # the honest red case: a plain tag bump leaves the secret unreadable, and the rehearsal names it
    image = report["targets"][0]["paths"]["image"]
    assert image["verdict"] == "changed"
    lost = by_name(image)["tool-user"]
    assert lost["verdict"] == "changed" and lost["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "placeholder"}
    assert any(d.startswith("tool_env_vars[WEATHER_TOKEN]: no longer readable") for d in lost["differences"])
    assert "WARNING (a plain tag bump): agent 'tool-user'" in result.stdout
    assert "VERDICT: every agent came through the letta-compat path intact" in result.stdout


def test_a_live_database_in_public_is_only_read_and_comes_through_to_0_16_2(seeded, letta_postgres, tmp_path):
    """--dsn: the source is read once by pg_dump; afterwards the same rows, checksums and objects."""
    name, _, dump = seeded
    live = f"rehearse_live_{uuid.uuid4().hex[:6]}"
    with letta_postgres.connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{live}" TEMPLATE template0 OWNER letta')
    dsn = letta_postgres.dsn(live)
    run_pg_tool("pg_restore", ["--no-owner", "--exit-on-error", str(dump)], dsn=dsn)
    with letta_postgres.connect(live) as conn:  # an operator's own PostgreSQL: Letta in public
        conn.execute("DROP SCHEMA public")
        conn.execute("ALTER SCHEMA letta RENAME TO public")
    try:
        before = fingerprint(letta_postgres, live)
        result = rehearse(letta_postgres.cache, "--dsn", dsn, "--to", "0.16.2", "--report", str(tmp_path / "r.json"))
        after = fingerprint(letta_postgres, live)
    finally:
        letta_postgres.drop_database(live)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert after == before
    password = dsn.split(":")[2].split("@")[0]
    assert password not in result.stdout + result.stderr + (tmp_path / "r.json").read_text()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"]["schema"] == "public" and report["source"]["kind"] == "dsn"
    compat = report["targets"][0]["paths"]["letta-compat"]
    assert compat["verdict"] == "intact" and {SLASH_NAME, UNICODE_NAME} <= set(by_name(compat))


def fingerprint(letta_postgres, name: str) -> dict:
    """Every table's row count and content checksum, and every object, of database ``name``."""
    with letta_postgres.connect(name) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        found = {t: conn.execute(f'SELECT count(*), md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) '
                                 f'FROM "{t}" x').fetchone() for t in tables}
        found["objects"] = sorted(conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").fetchall())
        found["functions"] = conn.execute("SELECT count(*) FROM pg_proc").fetchone()
    return found


def test_the_incident_database_comes_through_after_fix_ups_from_a_plain_sql_dump(seeded, letta_postgres, tmp_path):
    """An interrupted 0.16.2 upgrade (ee2b43eea55e: past 0.16.1's head, before 0.16.2's) and no sequence_id
    default (a hand-built schema): the seed incident's database."""
    name, _, dump = seeded
    half = f"rehearse_half_{uuid.uuid4().hex[:6]}"
    with letta_postgres.connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{half}" TEMPLATE "{name}" OWNER letta')
        conn.execute(f'ALTER DATABASE "{half}" SET search_path TO letta')
    dsn = letta_postgres.dsn(half)
    upgrade_database(dsn, HALF_WAY, letta_postgres.cache)
    with letta_postgres.connect(half) as conn:
        conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id DROP DEFAULT")
    plain = tmp_path / "incident.sql"
    run_pg_tool("pg_dump", ["-Fp", "-f", str(plain)], dsn=dsn)
    letta_postgres.drop_database(half)
    result = rehearse(letta_postgres.cache, "--dump", str(plain), "--to", "0.16.2", "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    report = json.loads((tmp_path / "r.json").read_text())
    source = report["source"]
    assert source["format"] == "plain" and source["state"] == "half-applied upgrade"
    assert "after Letta 0.16.1 and before Letta 0.16.2" in source["described"]
    assert any("sequence_id" in d for d in source["drift"]) and source["inventory_via"] == "sql"
    paths = report["targets"][0]["paths"]
    assert paths["letta-compat"]["verdict"] == "intact"
    assert any(f.startswith("messages.sequence_id default") and "repaired" in f for f in paths["letta-compat"]["fixups"])
    # without the fix-up the new turns are not stored: the image path is not intact, and says why
    assert paths["image"]["verdict"] == "changed"
    assert not all(e["ok"] for e in paths["image"]["exchange"])
    assert "Source: " in result.stdout and "partly applied upgrade" in result.stdout
    no_secret_anywhere(result, tmp_path / "r.json")


# -- bad input: exit 2, one line -----------------------------------------------------------
def one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("letta-compat: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]


def test_not_a_dump(tmp_path, letta_postgres):
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"\x00\x01 these are my notes, not a database\n")
    one_line_error(rehearse(letta_postgres.cache, "--dump", str(junk), "--to", "0.16.8"), "is not a PostgreSQL dump")


def test_a_dump_of_another_database(tmp_path, letta_postgres):
    other = tmp_path / "shop.sql"
    other.write_text("-- PostgreSQL database dump\nCREATE TABLE public.orders (id integer);\n")
    one_line_error(rehearse(letta_postgres.cache, "--dump", str(other), "--to", "0.16.8"),
                   "holds no alembic_version table: it is not a dump of a Letta database")


def test_a_live_database_that_is_not_letta(letta_postgres):
    name = f"rehearse_other_{uuid.uuid4().hex[:6]}"
    with letta_postgres.connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER letta')
    try:
        with letta_postgres.connect(name) as conn:
            conn.execute("CREATE TABLE public.orders (id integer)")
        result = rehearse(letta_postgres.cache, "--dsn", letta_postgres.dsn(name), "--to", "0.16.8")
    finally:
        letta_postgres.drop_database(name)
    one_line_error(result, "holds no Letta tables")


def test_a_dump_newer_than_every_target(tmp_path, letta_postgres):
    name = f"rehearse_new_{uuid.uuid4().hex[:6]}"
    letta_postgres.create_database(name, version="0.16.2")
    dump = tmp_path / "new.dump"
    try:
        pg_dump(letta_postgres.dsn(name), dump)
    finally:
        letta_postgres.drop_database(name)
    one_line_error(rehearse(letta_postgres.cache, "--dump", str(dump), "--to", "0.11.3", "--to", "0.16.1"),
                   "newer than every --to (0.11.3, 0.16.1)")


def test_an_unknown_revision(tmp_path, letta_postgres):
    name = f"rehearse_unknown_{uuid.uuid4().hex[:6]}"
    letta_postgres.create_database(name, version=OLD)
    dump = tmp_path / "unknown.dump"
    try:
        with letta_postgres.connect(name) as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
        pg_dump(letta_postgres.dsn(name), dump)
    finally:
        letta_postgres.drop_database(name)
    one_line_error(rehearse(letta_postgres.cache, "--dump", str(dump), "--to", "0.16.8"),
                   "is at alembic revision deadbeef0000, which no Letta release's migrations know")


@pytest.mark.parametrize("args, expected", [
    (["--to", "0.99.0"], "--to '0.99.0' is not a Letta server release this tool knows"),
    (["--to", "0.16.8", "--encryption-key-env", "NO_SUCH_VARIABLE_HERE"], "that environment variable is not set"),
])
def test_bad_options(tmp_path, letta_postgres, args, expected):
    missing = tmp_path / "none.dump"
    missing.write_bytes(b"PGDMP")
    one_line_error(rehearse(letta_postgres.cache, "--dump", str(missing), *args), expected)
