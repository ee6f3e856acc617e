"""`letta-compat rollback` per [[upgrade]] entry: after an in-place upgrade, the backup's
pg_dump archive puts the database back, the old server starts on it and has every agent;
a corrupt archive is refused before anything is dropped."""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat import versions
from pytest_letta_compat.operations.backup import backup
from pytest_letta_compat.operations.upgrade import UpgradeRequest, apply_upgrade
from pytest_letta_compat.versions import versions_at

from pytest_letta_compat.operations.upgrade_path import agents_in, seed_incident_agents
from pytest_letta_compat.suite.test_upgrade_inplace import revision_of

pytestmark = pytest.mark.letta_check("upgrade")


def test_rollback_puts_the_old_database_back(letta_upgrade_entry, letta_backend, letta_server_factory, letta_fake_llm,
                                             tmp_path):
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    old_head = versions.server_release(old).alembic_head
    database = f"rollback_{old}_{new}".replace(".", "_")
    letta_backend.create_database(database, version=old)
    dsn = letta_backend.dsn(database)
    password = secrets.token_urlsafe(16)
    server = letta_server_factory(old, database=database, password=password)
    with server.client() as client:
        seed_incident_agents(client, letta_fake_llm.base_url, exchanges=1)
    backup_dir = tmp_path / "backup"
    backup(server.url, backup_dir, api_key=password, dsn=dsn, progress=lambda _: None)
    before = agents_in(letta_backend, database)
    server.stop()

    # the in-place upgrade, through the phase the CLI's --apply runs
    apply_upgrade(UpgradeRequest(old, new, dsn, server.url, backup_dir, letta_backend.cache, api_key=password),
                  progress=lambda _: None)
    upgraded = versions.server_release(new).alembic_head
    assert revision_of(letta_backend, database) == upgraded

    # a corrupt archive is refused, and the upgraded database stays as it is
    corrupt = tmp_path / "corrupt"
    shutil.copytree(backup_dir, corrupt)
    with open(corrupt / "database.dump", "r+b") as f:
        f.seek(os.path.getsize(corrupt / "database.dump") // 2)
        f.write(b"corrupt")
    env = {**os.environ, "LETTA_PG_URI": dsn}  # the DSN's password stays off the command line
    refused = letta_compat("rollback", "--backup", str(corrupt), env=env, cache=letta_backend.cache)
    assert refused.returncode == 2
    assert "does not match manifest.json" in refused.stderr and "not touched" in refused.stderr
    assert revision_of(letta_backend, database) == upgraded

    rolled = letta_compat("rollback", "--backup", str(backup_dir), env=env, cache=letta_backend.cache)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert revision_of(letta_backend, database) == old_head
    assert f"the schema of Letta {', '.join(versions_at(old_head))}" in rolled.stdout
    assert old in rolled.stdout
    assert password not in rolled.stdout + rolled.stderr
    assert list(backup_dir.glob("before-rollback-*.dump")), "the upgraded database is kept before it is replaced"
    assert agents_in(letta_backend, database) == before

    again = letta_server_factory(old, database=database, password=password)
    with again.client() as client:
        assert client.get("/v1/health/").json()["version"] == old
        listed = client.get("/v1/agents/", params={"limit": 100}).raise_for_status().json()
        assert {a["id"]: a["name"] for a in listed} == {i: name for i, (name, _) in before.items()}
    again.stop()
