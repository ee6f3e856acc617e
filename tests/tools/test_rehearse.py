"""``letta-compat rehearse`` on databases this suite makes itself, run as an operator runs it.

A 0.11.3 database seeded through the real 0.11.3 API: an agent with a long history (> 120
stored messages), a "/" name and a non-ASCII name set by PATCH, a custom tool, archival
memory, a tool environment variable and a sandbox environment variable. Its dump is rehearsed
to real targets, with and without the server's encryption key; the half-applied incident
database (stopped between 0.16.1 and 0.16.2, no sequence_id default) too; bad inputs exit 2.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_letta_compat import versions
from pytest_letta_compat.operations.database import LettaDatabase
from pytest_letta_compat.operations.fixups import run_fixups
from pytest_letta_compat.postgres.client import pg_dump, run_pg_tool
from pytest_letta_compat.provision.alembic import upgrade_database

from rehearse_seed import OLD, SANDBOX_SECRET, SECRET, SLASH_NAME, UNICODE_NAME, by_name, rehearse

pytestmark = pytest.mark.letta_check("upgrade")
# the ``seeded`` fixture (the 0.11.3 database and its dump) is in tests/conftest.py

HALF_WAY = "ee2b43eea55e"  # 0.16.2's first revision: steps.request_id, but no conversations yet


@contextmanager
def scratch_database(letta_backend, kind: str, *, template: str | None = None, version: str | None = None,
                     search_path: bool = False) -> Iterator[str]:
    """A database of the test's own, dropped when the block ends: a copy of the database
    ``template``, of ``version``'s migrated template, or empty; ``search_path``: Letta's schema."""
    name = f"rehearse_{kind}_{uuid.uuid4().hex[:6]}"
    if version is not None:
        letta_backend.create_database(name, version=version)
    else:
        with letta_backend.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "") + " OWNER letta")
            if search_path:
                conn.execute(f'ALTER DATABASE "{name}" SET search_path TO letta')
    try:
        yield name
    finally:
        letta_backend.drop_database(name)


def no_secret_anywhere(result: subprocess.CompletedProcess, *files: Path, also: tuple[str, ...] = ()) -> None:
    for text in (result.stdout, result.stderr, *(f.read_text() for f in files if f.exists())):
        for secret in (SECRET, SANDBOX_SECRET, *also):
            assert secret not in text
            assert hashlib.sha256(secret.encode()).hexdigest() not in text


def test_a_0_11_3_dump_comes_through_to_0_16_8_and_the_image_path_loses_the_tool_secret(seeded, letta_backend,
                                                                                       tmp_path):
    _, agents, dump = seeded
    report_path = tmp_path / "rehearsal.json"
    result = rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.16.8", "--report", str(report_path))
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
    assert long["before"]["runs"] >= 6 and long["after"]["runs"] == long["before"]["runs"]  # a run per turn
    assert long["before"]["steps"] >= 6 and long["after"]["steps"] == long["before"]["steps"]  # a step per LLM call
    assert any(f.startswith("run history: ") and "567e9fe06270" in f and "repaired" in f for f in compat["fixups"])
    tool_user = named["tool-user"]
    assert "roll_dice" in tool_user["after"]["tools"] and tool_user["after"]["archival_passages"] == 2
    assert tool_user["before"]["tool_env_vars"] == {"WEATHER_TOKEN": "readable"}
    assert tool_user["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "readable"}
    # without the key, Letta's own backfills skip every secret: the fix-up moves both
    assert any(f.startswith("secrets only in plaintext columns: 2 secret") and "repaired" in f for f in compat["fixups"])
    assert any("were skipped: LETTA_ENCRYPTION_KEY was not set" in n for n in compat["migration_notes"])
    assert all(e["ok"] for e in compat["exchange"]) and len(compat["exchange"]) == 3
    # the honest red case: a plain tag bump leaves the secret unreadable, and the rehearsal names it
    image = report["targets"][0]["paths"]["image"]
    assert image["verdict"] == "changed"
    lost = by_name(image)["tool-user"]
    assert lost["verdict"] == "changed" and lost["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "placeholder"}
    assert any(d.startswith("tool_env_vars[WEATHER_TOKEN]: no longer readable") for d in lost["differences"])
    assert "WARNING (a plain tag bump): agent 'tool-user'" in result.stdout
    # and Letta's own migration leaves the old runs in jobs: the tag bump lists none of them
    runs_lost = by_name(image)["long-history"]
    assert runs_lost["after"]["runs"] == 0 and f"runs: {long['before']['runs']} before, 0 after" in " ".join(
        runs_lost["differences"])
    # an archive emptied before 0.13.0: Letta's migration gives it letta-free, the fix-up the agent's own
    emptied = by_name(image)[SLASH_NAME]
    assert any(d.startswith("embedding: openai/letta-free instead of ") for d in emptied["differences"]), emptied
    assert named[SLASH_NAME]["after"]["embedding"] == named[SLASH_NAME]["before"]["embedding"]
    assert any(f.startswith("archive embedding: 1 empty archive") and "repaired" in f for f in compat["fixups"])
    # the path that changed keeps its server log where a person finds it, masked; the intact one names none
    kept = Path(image["log"])
    assert kept.is_file() and "letta-server" in kept.name and f"log: {kept}" in result.stdout
    no_secret_anywhere(result, kept)
    assert compat["log"] is None
    assert "VERDICT: every agent came through the letta-compat path intact" in result.stdout


def test_a_live_database_in_public_is_only_read_and_comes_through_to_0_16_2(seeded, letta_backend, tmp_path):
    """--dsn: the source is read once by pg_dump; afterwards the same rows, checksums and objects."""
    name, _, dump = seeded
    with scratch_database(letta_backend, "live", template="template0") as live:
        dsn = letta_backend.dsn(live)
        run_pg_tool("pg_restore", ["--no-owner", "--exit-on-error", str(dump)], dsn=dsn)
        with letta_backend.connect(live) as conn:  # an operator's own PostgreSQL: Letta in public
            conn.execute("DROP SCHEMA public")
            conn.execute("ALTER SCHEMA letta RENAME TO public")
        before = fingerprint(letta_backend, live)
        result = rehearse(letta_backend.cache, "--dsn", dsn, "--to", "0.16.2", "--report", str(tmp_path / "r.json"))
        after = fingerprint(letta_backend, live)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert after == before
    password = dsn.split(":")[2].split("@")[0]
    assert password not in result.stdout + result.stderr + (tmp_path / "r.json").read_text()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"]["schema"] == "public" and report["source"]["kind"] == "dsn"
    compat = report["targets"][0]["paths"]["letta-compat"]
    assert compat["verdict"] == "intact" and {SLASH_NAME, UNICODE_NAME} <= set(by_name(compat))


def test_a_migration_that_fails_keeps_alembic_s_log_where_the_report_says(seeded, letta_backend, tmp_path):
    """A leftover of an earlier failed attempt (a table a later migration creates) makes alembic
    fail on both paths: the report says where it stopped and names alembic's log, kept (masked)
    outside the rehearsal's working directory, which is gone when it returns."""
    name, _, _ = seeded
    with scratch_database(letta_backend, "leftover", template=name) as leftover:
        with letta_backend.connect(leftover) as conn:
            conn.execute("CREATE TABLE letta.run_metrics (id text PRIMARY KEY)")
        dump = tmp_path / "leftover.dump"
        pg_dump(letta_backend.dsn(leftover), dump)
    result = rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.16.2", "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    no_secret_anywhere(result, tmp_path / "r.json")
    paths = json.loads((tmp_path / "r.json").read_text())["targets"][0]["paths"]
    for path in paths.values():
        assert path["verdict"] == "failed" and "alembic upgrade to 0.16.2 failed" in path["error"], path["error"]
        kept = Path(path["log"])
        assert kept.is_file() and "run_metrics" in kept.read_text() and f"log: {kept}" in result.stdout
        assert "letta-compat-rehearse-" not in str(kept)  # not in the working directory removed at the end


def fingerprint(letta_backend, name: str, schema: str = "public") -> dict:
    """Every table's row count and content checksum, and every object, of database ``name``."""
    with letta_backend.connect(name) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        found = {t: conn.execute(f'SELECT count(*), md5(coalesce(string_agg(x::text, \'|\' ORDER BY x::text), \'\')) '
                                 f'FROM "{schema}"."{t}" x').fetchone() for t in tables}
        found["objects"] = sorted(conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").fetchall())
        found["functions"] = conn.execute("SELECT count(*) FROM pg_proc").fetchone()
    return found


def test_the_incident_database_comes_through_after_fix_ups_from_a_plain_sql_dump(seeded, letta_backend, tmp_path):
    """An interrupted 0.16.2 upgrade (ee2b43eea55e: past 0.16.1's head, before 0.16.2's) and no sequence_id
    default (a hand-built schema): the seed incident's database."""
    name, _, dump = seeded
    plain = tmp_path / "incident.sql"
    with scratch_database(letta_backend, "half", template=name, search_path=True) as half:
        dsn = letta_backend.dsn(half)
        upgrade_database(dsn, HALF_WAY, letta_backend.cache)
        with letta_backend.connect(half) as conn:
            conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id DROP DEFAULT")
        run_pg_tool("pg_dump", ["-Fp", "-f", str(plain)], dsn=dsn)
    result = rehearse(letta_backend.cache, "--dump", str(plain), "--to", "0.16.2", "--report", str(tmp_path / "r.json"))
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


def test_with_the_encryption_key_alembic_runs_letta_s_backfill_which_still_skips_tool_env_vars(seeded, letta_backend,
                                                                                           tmp_path):
    """--encryption-key-env puts LETTA_ENCRYPTION_KEY into alembic's environment (and the servers'):
    Letta's backfill (8149a781ac1b) then encrypts the sandbox environment variable. It has no step
    for agent_environment_variables, so on the image path the tool env var still reads as the
    placeholder even with the key; the fix-up still carries it on the letta-compat path."""
    _, _, dump = seeded
    key = secrets.token_urlsafe(32)
    report_path = tmp_path / "rehearsal.json"
    result = rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.16.8", "--encryption-key-env",
                      "REHEARSAL_TEST_KEY", "--report", str(report_path), env={"REHEARSAL_TEST_KEY": key})
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    no_secret_anywhere(result, report_path, also=(key,))
    report = json.loads(report_path.read_text())
    paths = report["targets"][0]["paths"]
    for path in paths.values():  # the key reached alembic: Letta's backfill ran and encrypted the sandbox value
        assert "sandbox_environment_variables: 1 record(s) encrypted by Letta's data-encryption migration" \
            in path["migration_notes"], path["migration_notes"]
        assert not any("skipped" in note for note in path["migration_notes"])
    assert "alembic: sandbox_environment_variables: 1 record(s) encrypted" in result.stdout
    compat = paths["letta-compat"]
    assert compat["verdict"] == "intact" and not compat["not_checked"]
    assert by_name(compat)["tool-user"]["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "readable"}
    # only the agent's tool env var is left for the fix-up: the backfill never covered that table
    assert any(f.startswith("secrets only in plaintext columns: 1 secret value(s)") and
               "agent_environment_variables.value" in f and "repaired" in f for f in compat["fixups"])
    image = by_name(paths["image"])["tool-user"]
    assert image["verdict"] == "changed" and image["after"]["tool_env_vars"] == {"WEATHER_TOKEN": "placeholder"}


def test_letta_code_resumes_an_agent_of_a_0_11_3_dump_on_0_16_8(seeded, letta_backend, tmp_path):
    """--letta-code 0.34.12: on the letta-compat path's copy, with 0.16.8 running, the real CLI takes
    one headless turn on the dump's longest-history agent (a memgpt_v2_agent made by 0.11.3)."""
    _, agents, dump = seeded
    result = rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.16.8", "--letta-code", "0.34.12",
                      "--report", str(tmp_path / "rehearsal"))
    no_secret_anywhere(result, *(tmp_path / f"rehearsal{s}" for s in (".json", ".md", ".html")))
    report = json.loads((tmp_path / "rehearsal.json").read_text())
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    (run,) = report["targets"][0]["letta_code"]
    assert run["version"] == "0.34.12" and run["verdict"] == "works", run
    # the agent 0.11.3 made (a memgpt_v2_agent, not Letta Code's letta_v1_agent) is resumed, not replaced:
    # the turn is stored on it and reaches the model with the agent's earlier messages
    assert f"resumed agent 'long-history' ({agents['long']}, memgpt_v2_agent" in run["evidence"]
    assert "among them the rehearsal's earlier exchange with it" in run["evidence"]
    assert "Letta Code changed the agent" not in run["evidence"]  # no block or tool attached or removed
    assert report["letta_code_verdict"] == "works" and report["verdict"] == "intact"
    assert "Letta Code 0.34.12 resuming an agent of the dump: WORKS" in result.stdout
    page = (tmp_path / "rehearsal.html").read_text()
    assert "0.34.12" in page and ">works</td>" in page and "long-history" in page


def test_the_fix_ups_are_idempotent_on_an_upgraded_copy(seeded, letta_backend):
    """An upgrade to 0.16.8 as the image runs it, then the fix-ups twice: the first repairs the
    secrets left in plaintext columns and copies the old runs into Letta's new runs table, the second finds nothing to do and changes no row."""
    name, _, _ = seeded
    with scratch_database(letta_backend, "fixups", template=name, search_path=True) as copy:
        letta_backend.migrate(copy, "0.16.8")
        database = LettaDatabase(letta_backend.dsn(copy))
        first = {r.name: r for r in run_fixups(database, apply=True)}
        after_first = fingerprint(letta_backend, copy, "letta")
        second = run_fixups(database, apply=True)
        after_second = fingerprint(letta_backend, copy, "letta")
    repaired = first["secrets only in plaintext columns"]
    assert repaired.applied and repaired.drift.startswith("2 secret value(s)"), repaired
    runs = first["run history"]  # the seed's 6 turns, each a run 0.11.3 kept in jobs
    assert runs.applied and runs.drift.startswith("6 run(s) of 1 agent(s) are only in the old jobs table"), runs
    assert [str(r) for r in second] == [f"{r.name}: ok, nothing to do" for r in second]
    assert not any(r.applied for r in second)
    assert "agent_environment_variables" in after_second and "sandbox_environment_variables" in after_second
    assert after_second == after_first


# -- bad input: exit 2, one line -----------------------------------------------------------
def one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("letta-compat: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0], lines[0]


def test_not_a_dump(tmp_path, letta_backend):
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"\x00\x01 these are my notes, not a database\n")
    one_line_error(rehearse(letta_backend.cache, "--dump", str(junk), "--to", "0.16.8"), "is not a PostgreSQL dump")


def test_a_dump_of_another_database(tmp_path, letta_backend):
    other = tmp_path / "shop.sql"
    other.write_text("-- PostgreSQL database dump\nCREATE TABLE public.orders (id integer);\n")
    one_line_error(rehearse(letta_backend.cache, "--dump", str(other), "--to", "0.16.8"),
                   "holds no alembic_version table: it is not a dump of a Letta database")


def test_a_live_database_that_is_not_letta(letta_backend):
    with scratch_database(letta_backend, "other") as name:
        with letta_backend.connect(name) as conn:
            conn.execute("CREATE TABLE public.orders (id integer)")
        result = rehearse(letta_backend.cache, "--dsn", letta_backend.dsn(name), "--to", "0.16.8")
    one_line_error(result, "holds no Letta tables")


def test_a_dump_newer_than_every_target(tmp_path, letta_backend):
    dump = tmp_path / "new.dump"
    with scratch_database(letta_backend, "new", version="0.16.2") as name:
        pg_dump(letta_backend.dsn(name), dump)
    one_line_error(rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.11.3", "--to", "0.16.1"),
                   "newer than every --to (0.11.3, 0.16.1)")


def test_an_unknown_revision(tmp_path, letta_backend):
    dump = tmp_path / "unknown.dump"
    with scratch_database(letta_backend, "unknown", version=OLD) as name:
        with letta_backend.connect(name) as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
        pg_dump(letta_backend.dsn(name), dump)
    one_line_error(rehearse(letta_backend.cache, "--dump", str(dump), "--to", "0.16.8"),
                   "is at alembic revision deadbeef0000, which no Letta release's migrations know")


@pytest.mark.parametrize("args, expected", [
    (["--to", "0.99.0"], "--to '0.99.0' is not a Letta server release this tool knows"),
    (["--to", "0.16.8", "--encryption-key-env", "NO_SUCH_VARIABLE_HERE"], "that environment variable is not set"),
])
def test_bad_options(tmp_path, letta_backend, args, expected):
    missing = tmp_path / "none.dump"
    missing.write_bytes(b"PGDMP")
    one_line_error(rehearse(letta_backend.cache, "--dump", str(missing), *args), expected)
