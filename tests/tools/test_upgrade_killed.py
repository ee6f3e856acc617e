"""`letta-compat upgrade --apply` SIGKILLed inside its alembic run (#13 item 7), at the points
where Letta's migrations commit part-way: re-running it finishes the upgrade, `rollback`
undoes it, every agent and message is kept either way, and `schema check` names where the
database was left.

Where a kill leaves the database (Letta's env.py runs every migration in one transaction):
- b888f21b151f (0.12.0) sends a bare COMMIT before ALTER TYPE ... ADD VALUE: everything up to
  750dd87faa12 (between 0.11.7 and 0.12.0) is kept from then on.
- 8149a781ac1b, eff256d296cb commit only every 50 000 re-encrypted rows, and only with
  LETTA_ENCRYPTION_KEY set (the upgrade's alembic gets none): killed there, the database is
  left where b888f21b151f's commit put it.
- 45402909a46b commits everything before it, then runs CREATE INDEX CONCURRENTLY on a
  connection it switched to AUTOCOMMIT, and every statement after it (a08c972e781b's own
  CREATE INDEX CONCURRENTLY, the alembic_version stamps) commits one by one: killed from
  there on, the database stays at the revision stamped last, 0.16.6's head or between 0.16.6
  and 0.16.7.

The kill is real (SIGKILL to the CLI's process group, alembic included) and lands at a known
statement: a trigger (an alembic_version stamp) or an event trigger (a CREATE INDEX) installed
for the test holds the alembic session in pg_sleep until the test has killed the CLI; the test
then ends that orphaned session as PostgreSQL does when it finds its client gone, and removes
the triggers before anything is checked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat import versions
from pytest_letta_compat.operations.backup import backup
from pytest_letta_compat.provision.alembic import RevisionGraph
from pytest_letta_compat.provision.install import ensure_migration_scripts
from pytest_letta_compat.provision.procs import free_port
from pytest_letta_compat.operations.upgrade_path import agents_in, seed_incident_agents
from pytest_letta_compat.suite.test_upgrade_inplace import revision_of
from pytest_letta_compat.versions import describe_revision

OLD, NEW = "0.11.3", "0.16.8"
PAUSE_TIMEOUT = 600


@dataclass(frozen=True)
class KillPoint:
    id: str
    stamp: str | None = None  # killed while alembic stamps this revision (its upgrade() has run)
    ddl: str | None = None  # killed as this CREATE INDEX starts
    left_at: str = ""  # the revision the killed run leaves committed


POINTS = [
    KillPoint("8149a781ac1b", stamp="8149a781ac1b", left_at="750dd87faa12"),
    KillPoint("eff256d296cb", stamp="eff256d296cb", left_at="750dd87faa12"),
    KillPoint("45402909a46b-create-index-concurrently", ddl="idx_messages_on_updated_at", left_at="b2c3d4e5f6a8"),
    KillPoint("45402909a46b", stamp="45402909a46b", left_at="b2c3d4e5f6a8"),
    KillPoint("a08c972e781b", stamp="a08c972e781b", left_at="9fa274fb0b83"),
]


@dataclass
class Seeded:
    database: str
    backup_dir: object
    before: dict


@pytest.fixture(scope="module")
def seeded(letta_backend, letta_server_factory, letta_fake_llm, tmp_path_factory) -> Seeded:
    """One Letta 0.11.3 database with agents and history, backed up as `upgrade --apply` does
    (agents through the API, the database by pg_dump); each kill works on a copy of it."""
    database = "killed_source_0_11_3"
    letta_backend.create_database(database, version=OLD)
    server = letta_server_factory(OLD, database=database)
    with server.client() as client:
        seed_incident_agents(client, letta_fake_llm.base_url, exchanges=1)
    backup_dir = tmp_path_factory.mktemp("killed") / "backup"
    backup(server.url, backup_dir, dsn=letta_backend.dsn(database), progress=lambda _: None)
    server.stop()
    before = agents_in(letta_backend, database)
    assert len(before) == 5 and "AI/ML Expert" in {name for name, _ in before.values()} and all(count > 0 for _, count in before.values())
    return Seeded(database, backup_dir, before)


def _admin(letta_backend, database: str):
    return letta_backend.database_server().connect(database, admin=True)


def install_pause(letta_backend, database: str, point: KillPoint) -> None:
    """Hold the alembic session in pg_sleep at ``point`` until the test lets go."""
    with _admin(letta_backend, database) as conn:
        conn.execute("CREATE SCHEMA killtest")
        conn.execute("CREATE TABLE killtest.release (go boolean)")
        conn.execute("GRANT USAGE ON SCHEMA killtest TO letta; GRANT SELECT ON killtest.release TO letta")
        conn.execute("CREATE FUNCTION killtest.hold() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                     "WHILE NOT EXISTS (SELECT 1 FROM killtest.release) LOOP PERFORM pg_sleep(0.05); END LOOP; "
                     "END $$")
        if point.stamp:
            conn.execute(f"CREATE FUNCTION killtest.on_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         f"IF NEW.version_num = '{point.stamp}' THEN PERFORM killtest.hold(); END IF; "
                         "RETURN NEW; END $$")
            conn.execute("CREATE TRIGGER killtest_stamp BEFORE UPDATE ON letta.alembic_version "
                         "FOR EACH ROW EXECUTE FUNCTION killtest.on_stamp()")
        else:
            conn.execute(f"CREATE FUNCTION killtest.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
                         f"IF current_query() ILIKE '%{point.ddl}%' THEN PERFORM killtest.hold(); END IF; END $$")
            conn.execute("CREATE EVENT TRIGGER killtest_ddl ON ddl_command_start WHEN TAG IN ('CREATE INDEX') "
                         "EXECUTE FUNCTION killtest.on_ddl()")


def remove_pause(letta_backend, database: str) -> None:
    with _admin(letta_backend, database) as conn:
        conn.execute("DROP EVENT TRIGGER IF EXISTS killtest_ddl")
        conn.execute("DROP TRIGGER IF EXISTS killtest_stamp ON letta.alembic_version")
        conn.execute("DROP SCHEMA killtest CASCADE")


def sessions(letta_backend, database: str, *, holding: bool = False) -> list[int]:
    """Sessions on ``database`` (with ``holding``: those held in killtest.hold())."""
    with letta_backend.database_server().connect("postgres", admin=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                            + (" AND wait_event = 'PgSleep'" if holding else ""), (database,)).fetchall()
    return [pid for (pid,) in rows]


def kill_upgrade_at(letta_backend, database: str, point: KillPoint, upgrade: list[str]) -> str:
    """Run `upgrade --apply`, SIGKILL its process group once alembic is held at ``point``,
    and end the orphaned session. Returns what the CLI printed before it died."""
    install_pause(letta_backend, database, point)
    proc = subprocess.Popen([sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir",
                             str(letta_backend.cache), *upgrade, "--apply"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + PAUSE_TIMEOUT
    try:
        while not (held := sessions(letta_backend, database, holding=True)):
            if proc.poll() is not None:
                pytest.fail(f"upgrade --apply ended (exit {proc.returncode}) before reaching {point.id}:\n"
                            f"{proc.stdout.read()}")
            assert time.monotonic() < deadline, f"alembic never reached {point.id}"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        printed = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL
    with letta_backend.database_server().connect("postgres", admin=True) as conn:
        for pid in held:  # what PostgreSQL does once it finds the client gone
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    while sessions(letta_backend, database):
        assert time.monotonic() < deadline, "the killed upgrade's session does not end"
        time.sleep(0.1)
    remove_pause(letta_backend, database)
    return printed


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_killed_upgrade_resumes_or_rolls_back(point, seeded, letta_backend, tmp_path):
    cache = letta_backend.cache
    graph = RevisionGraph.from_scripts(ensure_migration_scripts(cache))
    old_head, new_head = (versions.server_release(v).alembic_head for v in (OLD, NEW))
    killed = f"killed_{point.id}".replace("-", "_")
    dsn = letta_backend.database_server().create_database(killed, template=seeded.database)
    backup_dir = tmp_path / "backup"
    shutil.copytree(seeded.backup_dir, backup_dir)
    backed_up = {p.name: p.read_bytes() for p in backup_dir.iterdir() if p.is_file()}
    env = {**os.environ, "LETTA_PG_URI": dsn}  # the password stays off the command line
    stopped = f"http://127.0.0.1:{free_port()}"  # the old server is stopped, as --apply requires
    upgrade = ["upgrade", "--from", OLD, "--to", NEW, "--dsn", dsn, "--url", stopped, "--backup", str(backup_dir)]

    printed = kill_upgrade_at(letta_backend, killed, point, upgrade)
    assert "migrating from" in printed, printed
    left = revision_of(letta_backend, killed)
    assert left == point.left_at, f"killed at {point.id}: {describe_revision(left, graph)}"
    assert agents_in(letta_backend, killed) == seeded.before

    # (a) schema check names where the killed upgrade left the database
    check = letta_compat("schema", "check", "--server-version", NEW, env=env, cache=cache)
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"alembic revision: found {describe_revision(left, graph)}" in check.stdout, check.stdout
    if not versions.versions_at(left):
        assert "between releases" in check.stdout
    assert "Traceback" not in check.stderr

    # a copy of the killed database for the rollback (c)
    rolled = f"{killed}_rb"
    letta_backend.database_server().create_database(rolled, template=killed)

    # (b) the same command again finishes the upgrade, with the backup made before the kill
    again = letta_compat(*upgrade, "--apply", env=env, cache=cache)
    assert again.returncode == 0, again.stdout + again.stderr
    assert revision_of(letta_backend, killed) == new_head
    assert agents_in(letta_backend, killed) == seeded.before
    assert {p.name: p.read_bytes() for p in backup_dir.iterdir() if p.name in backed_up} == backed_up
    ready = letta_compat("schema", "check", "--server-version", NEW, env=env, cache=cache)
    assert ready.returncode == 0, ready.stdout + ready.stderr

    # (c) or rollback puts the pre-upgrade database back
    back = letta_compat("rollback", "--backup", str(backup_dir),
                        env={**os.environ, "LETTA_PG_URI": letta_backend.dsn(rolled)}, cache=cache)
    assert back.returncode == 0, back.stdout + back.stderr
    assert revision_of(letta_backend, rolled) == old_head
    assert agents_in(letta_backend, rolled) == seeded.before

    password = letta_backend.dsn(killed).split(":")[2].split("@")[0]
    for out in (printed, check.stdout + check.stderr, again.stdout + again.stderr, back.stdout + back.stderr):
        assert password not in out
    for name in (killed, rolled):
        letta_backend.drop_database(name)
