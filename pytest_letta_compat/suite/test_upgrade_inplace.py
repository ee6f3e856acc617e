"""`letta-compat upgrade` per [[upgrade]] entry, through the real CLI on real servers: the
dry run changes nothing, the backup gate holds, --apply migrates, the new server keeps every
agent; and the fix-ups repair the sequence drift that made the incident's server answer 409."""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat import versions
from pytest_letta_compat.plugin.reporting import NOTE_PROPERTY
from pytest_letta_compat.versions_upgrades import FIXUP_NOTE
from pytest_letta_compat.rest.agents import assistant_texts, send_message
from pytest_letta_compat.operations.database import LettaDatabase
from pytest_letta_compat.operations.fixups import SequenceBehind, SequenceDefault, run_fixups
from pytest_letta_compat.operations.upgrade import UpgradeRequest, finish_upgrade
from pytest_letta_compat.operations.upgrade_path import agents_in
from pytest_letta_compat.provision.procs import free_port

pytestmark = pytest.mark.letta_check("upgrade")


def revision_of(postgres, database: str) -> str:
    with postgres.connect(database) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_in_place_upgrade_through_the_cli(letta_upgrade_entry, letta_upgrade_path, letta_backend,
                                         letta_server_factory, tmp_path, record_property):
    """Its own servers, on its own copy of the path's seeded database: the CLI backs up from
    the old server live on that database, must refuse to migrate under it, and migrates once
    the operator has stopped it; then the new server starts on what the CLI produced."""
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    old_head, new_head = (versions.server_release(v).alembic_head for v in (old, new))
    database = letta_upgrade_path.clone("seeded")
    password = secrets.token_urlsafe(16)  # secure servers: the CLI gets it as $LETTA_API_KEY
    server = letta_server_factory(old, database=database, password=password)
    before = agents_in(letta_backend, database)
    assert "AI/ML Expert" in {name for name, _ in before.values()}
    backup_dir = tmp_path / "backup"
    upgrade = ["upgrade", "--from", old, "--to", new, "--dsn", letta_backend.dsn(database), "--url", server.url,
               "--backup", str(backup_dir)]
    cache = letta_backend.cache
    outputs = []

    # the dry run shows the plan and changes nothing
    dry = letta_compat(*upgrade, api_key=password, cache=cache)
    outputs.append(dry)
    assert dry.returncode == 0, dry.stderr
    same_head = new_head == old_head  # e.g. 0.16.7 -> 0.16.8: the plan says so and the other checks still run
    expected = "nothing to migrate" if same_head else f"alembic upgrade {new_head}"
    assert "Dry run" in dry.stdout and expected in dry.stdout, dry.stdout
    assert revision_of(letta_backend, database) == old_head
    assert not backup_dir.exists()

    # --apply while the old server runs: it backs up and verifies, then refuses to migrate under it
    first = letta_compat(*upgrade, "--apply", api_key=password, cache=cache)
    outputs.append(first)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "backup is verified" in first.stderr and "Stop it" in first.stderr
    assert (backup_dir / "manifest.json").is_file() and (backup_dir / "database.dump").is_file()
    assert revision_of(letta_backend, database) == old_head
    server.stop()

    # a corrupt archive stops everything before the database is touched
    corrupt = tmp_path / "corrupt"
    shutil.copytree(backup_dir, corrupt)
    with open(corrupt / "database.dump", "r+b") as f:
        f.seek(-64, os.SEEK_END)
        f.write(b"\0" * 64)
    refused = letta_compat(*upgrade[:-1], str(corrupt), "--apply", cache=cache)
    outputs.append(refused)
    assert refused.returncode == 2
    assert "does not match manifest.json" in refused.stderr and "not touched" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert revision_of(letta_backend, database) == old_head

    # with the server stopped and the backup verified, --apply migrates and says what to do next
    applied = letta_compat(*upgrade, "--apply", cache=cache)
    outputs.append(applied)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert revision_of(letta_backend, database) == new_head
    assert f"start Letta {new}" in applied.stdout and "letta-compat verify" in applied.stdout
    repaired = [line.removeprefix("fix-up ").removesuffix(" -> repaired") for line in applied.stdout.splitlines()
                if line.startswith("fix-up ") and line.endswith(" -> repaired")]
    if repaired:  # the server-upgrade table names the fix-ups a path needs
        record_property(NOTE_PROPERTY, FIXUP_NOTE + "; ".join(repaired))

    after = letta_server_factory(new, database=database, password=password)
    verify = letta_compat("verify", "--url", after.url, str(backup_dir), api_key=password, cache=cache)
    outputs.append(verify)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert agents_in(letta_backend, database) == before  # same ids, names ("AI/ML Expert") and history
    with after.client() as client:
        agent_id = next(i for i, (name, _) in before.items() if name == "AI/ML Expert")
        reply = send_message(client, agent_id, "still there after the upgrade?")
        assert assistant_texts(reply) == ["fake-llm reply to: still there after the upgrade?"]
    letta_server_factory.stop_soon(after)

    dsn_password = LettaDatabase(letta_backend.dsn(database)).params["password"]
    for proc in outputs:
        assert password not in proc.stdout + proc.stderr
        assert dsn_password not in proc.stdout + proc.stderr


def test_recreate_strategy_carries_every_agent(letta_upgrade_entry, letta_upgrade_path, letta_backend,
                                               letta_server_factory, tmp_path):
    """The incident's manual procedure done safely: drop and recreate only with a verified
    archive, migrate the empty database, then (new server started) restore and verify every
    agent. On its own copy of the path's seeded database, with the old server stopped, gated
    on the path's backup (every agent and the pg_dump archive, taken from the live old server
    when the path was seeded; the in-place check above proves the CLI takes such a backup);
    the new server starts on the database the CLI recreated."""
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    database = letta_upgrade_path.clone("seeded")
    password = letta_upgrade_path.password
    before = agents_in(letta_backend, database)
    backup_dir = tmp_path / "backup"
    shutil.copytree(letta_upgrade_path.backup_dir, backup_dir)
    stopped = f"http://127.0.0.1:{free_port()}"  # the old server is stopped, as --apply requires
    request = UpgradeRequest(old, new, letta_backend.dsn(database), stopped, backup_dir, letta_backend.cache,
                             api_key=password, strategy="recreate")
    env = {**os.environ, "LETTA_PG_URI": request.dsn}
    upgrade = ["upgrade", "--from", old, "--to", new, "--url", stopped, "--backup", str(backup_dir),
               "--strategy", "recreate", "--apply"]
    applied = letta_compat(*upgrade, api_key=password, env=env, cache=letta_backend.cache)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "backup" in applied.stdout and "verified" in applied.stdout, applied.stdout
    assert "letta-compat restore" in applied.stdout
    assert revision_of(letta_backend, database) == versions.server_release(new).alembic_head
    assert agents_in(letta_backend, database) == {}  # recreated empty: the agents come back through the API

    assert "keep every client away from it until verify has passed" in applied.stdout
    after = letta_server_factory(new, database=database, password=password)
    some_agent = next(iter(before))
    with after.client() as client:  # why clients must wait
        assert client.get(f"/v1/agents/{some_agent}").status_code == 404  # lettabot#342 makes a new agent here
    request.url = after.url
    report = finish_upgrade(request, progress=lambda _: None)
    assert report.ok, report.format_table()
    restored = agents_in(letta_backend, database)
    assert sorted(restored.values()) == sorted(before.values())  # names ("AI/ML Expert") and message counts
    letta_server_factory.stop_soon(after)


def test_refuses_to_upgrade_without_a_backup(letta_upgrade_entry, letta_backend, tmp_path):
    """No backup and no server to make one from: nothing is touched, and the message says why."""
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    database = letta_backend.unique_name("nobackup", old, new)
    letta_backend.create_database(database, version=old)
    stopped = f"http://127.0.0.1:{free_port()}"
    proc = letta_compat("upgrade", "--from", old, "--to", new, "--dsn",
                        letta_backend.dsn(database), "--url", stopped, "--backup", str(tmp_path / "none"), "--apply", cache=letta_backend.cache)
    assert proc.returncode == 2
    assert "Refusing to upgrade without a backup" in proc.stderr and "Traceback" not in proc.stderr
    assert revision_of(letta_backend, database) == versions.server_release(old).alembic_head


def test_sequence_fixups_let_messages_through_again(letta_upgrade_entry, letta_upgrade_path, letta_backend,
                                                    letta_server_factory):
    """The two drifts on messages.sequence_id: no default (inserts fail NOT NULL) and a sequence
    behind the data (inserts collide); Letta 0.16.2 then answers 200 yet keeps none of the new
    messages. The fix-ups run with the server stopped, as the upgrade runs them (a running
    0.16.2 may hang its next request for 60 s after an ALTER TABLE under it). Repaired, a
    message is answered and stored again; a second run finds nothing to do. On a copy of the
    path's upgraded database (agents with history); its own server, started on the repaired
    database, because the drift is made and repaired with no server on it."""
    new = letta_upgrade_entry.to_version
    database = letta_upgrade_path.clone("upgraded")
    agent = {"id": letta_upgrade_path.agents["AI/ML Expert"]}
    target = LettaDatabase(letta_backend.dsn(database))
    with letta_backend.connect(database) as conn:
        conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id DROP DEFAULT")
        assert not any(r.applied for r in run_fixups(target, apply=False))  # detecting changes nothing
        assert _sequence_state(conn)[0] is None
        results = _by_name(run_fixups(target, apply=True))
        assert _applied(results) == {DEFAULT}
        assert "no default" in results[DEFAULT].drift
        assert _sequence_state(conn)[0] == "nextval('message_seq_id'::regclass)"

        conn.execute("SELECT setval('message_seq_id', 1, false)")  # as a bulk restore leaves it
        results = _by_name(run_fixups(target, apply=True))
        assert _applied(results) == {BEHIND}
        assert "would hand out 1" in results[BEHIND].drift

        state = _sequence_state(conn)
        assert all(r.drift is None and not r.applied for r in run_fixups(target, apply=True))
        assert _sequence_state(conn) == state

        again = letta_server_factory(new, database=database)
        with again.client() as client:
            _assert_message_is_answered_and_stored(client, conn, agent["id"], "after the fix-ups")
        letta_server_factory.stop_soon(again)


def test_fixup_normalises_the_incidents_hand_made_sequence(letta_upgrade_entry, letta_backend):
    """The incident typed CREATE SEQUENCE messages_sequence_id_seq ...: the fix-up moves the
    column back to Letta's own message_seq_id, past every value either one handed out."""
    new = letta_upgrade_entry.to_version
    database = letta_backend.unique_name("handfix", letta_upgrade_entry.from_version, new)  # per path and run
    letta_backend.create_database(database, version=new)
    with letta_backend.connect(database) as conn:
        conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id DROP DEFAULT")
        conn.execute("DROP SEQUENCE message_seq_id")
        conn.execute("CREATE SEQUENCE messages_sequence_id_seq OWNED BY messages.sequence_id")
        conn.execute("SELECT setval('messages_sequence_id_seq', 500)")
        conn.execute("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval('messages_sequence_id_seq')")
        results = _by_name(run_fixups(LettaDatabase(letta_backend.dsn(database)), apply=True))
        assert _applied(results) == {DEFAULT} and "messages_sequence_id_seq" in results[DEFAULT].drift
        default, upcoming = _sequence_state(conn)
        assert default == "nextval('message_seq_id'::regclass)"
        assert upcoming == 501
        assert conn.execute("SELECT to_regclass('messages_sequence_id_seq')").fetchone()[0] is None


DEFAULT, BEHIND = SequenceDefault.name, SequenceBehind.name  # the two sequence fix-ups


def _by_name(results) -> dict:
    return {r.name: r for r in results}


def _applied(results: dict) -> set[str]:
    return {name for name, r in results.items() if r.applied}


def _assert_message_is_answered_and_stored(client, conn, agent_id: str, text: str) -> None:
    count = "SELECT count(*) FROM messages WHERE agent_id = %s"
    (before,) = conn.execute(count, (agent_id,)).fetchone()
    resp = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": text}]})
    assert resp.status_code == 200, resp.text
    assert assistant_texts(resp.json()) == [f"fake-llm reply to: {text}"]
    assert conn.execute(count, (agent_id,)).fetchone()[0] > before


def _sequence_state(conn) -> tuple[str | None, int]:
    """(messages.sequence_id default, the value message_seq_id hands out next)."""
    (default,) = conn.execute("SELECT column_default FROM information_schema.columns "
                              "WHERE table_name = 'messages' AND column_name = 'sequence_id'").fetchone()
    last, called = conn.execute("SELECT last_value, is_called FROM message_seq_id").fetchone()
    return default, last + 1 if called else last
