"""Restore under faults, per [[upgrade]] entry: the target server dies in the middle of a
restore, and a backup has a corrupt file. Nothing is duplicated, nothing is lost, and what
could not be restored is named."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import pytest

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat.rest.agents import create_agent, send_message
from pytest_letta_compat.operations.agentfile import MARKER
from pytest_letta_compat.operations.backup import backup, read_manifest
from pytest_letta_compat.operations.restore import restore
from pytest_letta_compat.operations.verify import verify


pytestmark = pytest.mark.letta_check("roundtrip")

AGENTS = 6


@pytest.fixture(scope="module")
def small_backup(letta_upgrade_entry, letta_server_factory, letta_fake_llm, tmp_path_factory):
    """A backup of six agents of the old version, one renamed to "AI/ML Expert"."""
    old = letta_server_factory(letta_upgrade_entry.from_version)
    with old.client() as client:
        for i in range(AGENTS):
            agent = create_agent(client, f"fault-{i}", letta_fake_llm.base_url)
            send_message(client, agent["id"], f"hello agent {i}")
            if i == 3:
                client.patch(f"/v1/agents/{agent['id']}", json={"name": "AI/ML Expert"}).raise_for_status()
    directory = tmp_path_factory.mktemp("faults") / "backup"
    backup(old.url, directory, progress=lambda line: None)
    old.stop()
    return directory


def _copy(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def _restored_per_source(stack) -> Counter:
    with stack.client() as client:
        agents = client.get("/v1/agents/", params={"limit": 200}).raise_for_status().json()
    return Counter((a.get("metadata") or {}).get(MARKER) for a in agents if (a.get("metadata") or {}).get(MARKER))


def test_restore_resumes_after_the_target_server_is_killed(small_backup, letta_upgrade_entry,
                                                           letta_server_factory, tmp_path):
    backup_dir = _copy(small_backup, tmp_path / "backup")
    target = letta_server_factory(letta_upgrade_entry.to_version)
    restored = []
    # SIGKILL a moment after the second agent, while the third import is (most likely) in flight
    killer = threading.Timer(0.3, os.kill, (target.pid, signal.SIGKILL))

    def kill_after_two(line: str) -> None:
        if line.startswith("  restored"):
            restored.append(line)
            if len(restored) == 2:
                killer.start()

    first = restore(target.url, backup_dir, progress=kill_after_two)
    killer.join()
    assert not first.ok
    assert [o.status for o in first.outcomes[:2]] == ["restored", "restored"]
    assert all(o.reason for o in first.failed)  # each says why
    target.stop()

    again = letta_server_factory(letta_upgrade_entry.to_version, database=target.database)
    second = restore(again.url, backup_dir, progress=lambda line: None)
    assert second.ok, [(o.name, o.reason) for o in second.failed]
    assert {o.status for o in second.outcomes[:2]} == {"skipped-already-present"}
    manifest = read_manifest(backup_dir)
    assert _restored_per_source(again) == Counter({a.id: 1 for a in manifest.agents})  # none twice, none lost
    assert verify(again.url, backup_dir).ok
    third = restore(again.url, backup_dir, progress=lambda line: None)
    assert {o.status for o in third.outcomes} == {"skipped-already-present"}
    again.stop()


def test_a_corrupt_file_is_named_and_the_other_agents_are_restored(small_backup, letta_upgrade_entry,
                                                                   letta_server_factory, tmp_path):
    backup_dir = _copy(small_backup, tmp_path / "backup")
    manifest = read_manifest(backup_dir)
    broken = manifest.agents[2]
    history = backup_dir / "agents" / broken.id / "history.json"
    history.write_bytes(history.read_bytes()[: history.stat().st_size // 2])  # truncated
    target = letta_server_factory(letta_upgrade_entry.to_version)
    run = letta_compat("restore", "--url", target.url, str(backup_dir))
    assert run.returncode == 1
    assert str(history) in run.stderr and "corrupt or truncated" in run.stderr
    assert broken.name in run.stderr and "Traceback" not in run.stderr
    restored = _restored_per_source(target)
    assert restored == Counter({a.id: 1 for a in manifest.agents if a.id != broken.id})
    report = verify(target.url, backup_dir)
    assert [r.name for r in report.rows if not r.ok] == [broken.name]
    target.stop()


def test_restore_reports_an_unreachable_server_as_one_paragraph(small_backup):
    from pytest_letta_compat.provision.procs import free_port

    run = letta_compat("restore", "--url", f"http://127.0.0.1:{free_port()}", str(small_backup))
    assert run.returncode == 2
    assert run.stderr.startswith("letta-compat: error: ") and "Traceback" not in run.stderr

