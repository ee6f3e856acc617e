"""Backup → restore → verify per [[upgrade]] entry (the recreate + restore strategy), through
the real ``letta-compat`` CLI: the old server holds the agents the incident lost or
truncated ("AI/ML Expert", a non-ASCII name, a history past 120 messages, a custom tool, a
10 KB memory block); a fresh server of the new version gets them all back."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

from pytest_letta_compat.suite.cli import letta_compat
from pytest_letta_compat import versions
from pytest_letta_compat.rest.agents import assistant_texts, send_message
from pytest_letta_compat.rest import client as letta_api
from pytest_letta_compat.operations.agentfile import MARKER, role_counts
from pytest_letta_compat.operations.backup import backup, load_backup

pytestmark = pytest.mark.letta_check("roundtrip")


@dataclass
class RoundTrip:
    old: object
    new: object
    password: str
    backup_dir: Path
    seeded: dict[str, str]
    backup_run: subprocess.CompletedProcess
    restore_run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def roundtrip(letta_upgrade_entry, letta_upgrade_path, letta_server_factory, tmp_path_factory) -> RoundTrip:
    """The path's old server (the incident's agents, seeded once per path), backed up with the
    CLI (pg_dump included), restored with the CLI into a fresh, password-protected server of
    the new version: the restore target must start empty, so it is this module's own."""
    old = letta_upgrade_path.old_server()
    backup_dir = tmp_path_factory.mktemp("roundtrip") / "backup"
    backup_run = letta_compat("backup", "--url", old.url, "--out", str(backup_dir), "--dsn", old.dsn,
                              api_key=old.password)
    password = secrets.token_urlsafe(12)
    new = letta_server_factory(letta_upgrade_entry.to_version, secure=True, password=password)
    restore_run = letta_compat("restore", "--url", new.url, str(backup_dir), api_key=password)
    yield RoundTrip(old, new, password, backup_dir, dict(letta_upgrade_path.agents), backup_run, restore_run)
    letta_server_factory.stop_soon(new)


def test_backup_holds_every_agent_with_its_whole_history(roundtrip, letta_upgrade_entry):
    assert roundtrip.backup_run.returncode == 0, roundtrip.backup_run.stderr
    manifest = load_backup(roundtrip.backup_dir)  # every checksum and count as recorded
    assert {a.name: a.id for a in manifest.agents} == roundtrip.seeded
    assert manifest.server_version == letta_upgrade_entry.from_version
    assert manifest.alembic_revision == versions.server_release(letta_upgrade_entry.from_version).alembic_head
    assert (roundtrip.backup_dir / manifest.database_dump).stat().st_size > 0
    long = next(a for a in manifest.agents if a.name == "long-history")
    assert long.messages > 120
    exported = json.loads((roundtrip.backup_dir / "agents" / long.id / "export.json").read_text())
    exported_messages = exported["messages"] if "messages" in exported else exported["agents"][0]["messages"]
    # the history file is the backup's source of truth: never shorter than the export. A 0.11.x
    # export drops the boot messages, so restoring only the export would lose some there; a
    # 0.16.x export carries every in-context message (here: all of them, nothing was summarised)
    assert len(exported_messages) <= long.messages
    if Version(letta_upgrade_entry.from_version) < Version("0.12"):
        assert len(exported_messages) < long.messages
    for name in ("AI/ML Expert", "Ágent Zoë 🌟"):
        assert name in roundtrip.backup_run.stdout


def test_restore_brings_every_agent_back_with_its_exact_name_and_full_history(roundtrip):
    """The issue's Must-show: exact names (no "_copy", "/" kept) and every message."""
    assert roundtrip.restore_run.returncode == 0, roundtrip.restore_run.stdout + roundtrip.restore_run.stderr
    manifest = load_backup(roundtrip.backup_dir)
    with roundtrip.new.client() as client:
        agents = [client.get(f"/v1/agents/{a['id']}").json() for a in client.get("/v1/agents/").json()]
        restored = {a["metadata"][MARKER]: a for a in agents if MARKER in (a.get("metadata") or {})}
        assert sorted(a["name"] for a in restored.values()) == sorted(roundtrip.seeded)
        for record in manifest.agents:
            history = letta_api.LettaAPI(roundtrip.new.url, api_key=roundtrip.password).messages(
                restored[record.id]["id"])
            assert restored[record.id]["name"] == record.name
            assert role_counts(history) == record.messages_by_role, record.name
    assert not any(a["name"].endswith("_copy") for a in agents)


def test_verify_exits_0_after_the_restore(roundtrip):
    run = letta_compat("verify", "--url", roundtrip.new.url, str(roundtrip.backup_dir), api_key=roundtrip.password)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(roundtrip.seeded)} of {len(roundtrip.seeded)} agents verified" in run.stdout


def _texts(stack, agent_id: str) -> list[tuple[str, str]]:
    """(type, text) of the user and assistant turns, oldest first: the conversation as read."""
    texts = []
    for m in letta_api.LettaAPI(stack.url, api_key=stack.password).messages(agent_id):
        if m["message_type"] == "user_message":
            texts.append(("user", m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])))
        elif m["message_type"] == "tool_call_message" and m["tool_call"]["name"] == "send_message":
            texts.append(("assistant", json.loads(m["tool_call"]["arguments"])["message"]))
        elif m["message_type"] == "assistant_message":
            texts.append(("assistant", m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])))
    return texts


def test_agents_compare_field_by_field_old_vs_new(roundtrip, record_property):
    """Everything an operator sees must match; the fields that legitimately change (ids,
    timestamps, config defaults of the new version) are reported, not hidden."""
    essential = ("name", "system", "description", "tags", "agent_type", "message_buffer_autoclear")
    reported: list[str] = []
    with roundtrip.old.client() as old, roundtrip.new.client() as new:
        by_source = {(a.get("metadata") or {}).get(MARKER): a["id"] for a in new.get("/v1/agents/", params={"limit": 100}).json()}
        for name, old_id in roundtrip.seeded.items():
            before = old.get(f"/v1/agents/{old_id}").raise_for_status().json()
            after = new.get(f"/v1/agents/{by_source[old_id]}").raise_for_status().json()
            for key in essential:
                assert after.get(key) == before.get(key), f"{name}: {key}"
            blocks = lambda s: {b["label"]: (b["value"], b["limit"]) for b in s["memory"]["blocks"]}  # noqa: E731
            assert blocks(after) == blocks(before), name
            assert sorted(t["name"] for t in after["tools"]) == sorted(t["name"] for t in before["tools"]), name
            assert _texts(roundtrip.new, after["id"]) == _texts(roundtrip.old, old_id), name
            skip = {*essential, "id", "created_at", "updated_at", "memory", "tools", "message_ids", "metadata"}
            for key in sorted((set(before) & set(after)) - skip):
                if before[key] != after[key]:
                    reported.append(f"{name}: {key} {str(before[key])[:60]!r} -> {str(after[key])[:60]!r}")
            reported.append(f"{name}: fields only the new version has: {sorted(set(after) - set(before))}")
            for key in ("model", "model_endpoint_type", "context_window"):
                assert after["llm_config"][key] == before["llm_config"][key], f"{name}: llm_config.{key}"
    record_property("fields_that_differ", reported)
    print("\n".join(["fields that differ old vs new (expected: new ids/defaults):", *reported]))


def test_a_restored_agent_keeps_talking(roundtrip):
    with roundtrip.new.client() as client:
        restored = next(a for a in client.get("/v1/agents/", params={"limit": 100}).json() if a["name"] == "long-history")
        reply = send_message(client, restored["id"], "do you still remember message 000?")
    assert assistant_texts(reply) == ["fake-llm reply to: do you still remember message 000?"]


def test_backup_pages_through_every_agent(roundtrip, tmp_path, monkeypatch):
    """The incident's scripts read one page of 50: with pages of 2, five agents take three."""
    monkeypatch.setattr(letta_api, "PAGE", 2)
    manifest = backup(roundtrip.old.url, tmp_path / "paged", api_key=roundtrip.old.password, progress=lambda line: None)
    assert sorted(a.name for a in manifest.agents) == sorted(roundtrip.seeded)


def test_backup_of_the_new_server_exports_a_slash_name_and_puts_it_back(roundtrip, tmp_path):
    """0.13+ answers 500 to exporting "AI/ML Expert": the backup renames around the export."""
    manifest = backup(roundtrip.new.url, tmp_path / "again", api_key=roundtrip.password, progress=lambda line: None)
    record = next(a for a in manifest.agents if a.name == "AI/ML Expert")
    if Version(roundtrip.new.version) >= Version("0.13"):
        assert record.export_name and "/" not in record.export_name
    with roundtrip.new.client() as client:
        assert client.get(f"/v1/agents/{record.id}").json()["name"] == "AI/ML Expert"


def test_restore_into_the_newest_release(roundtrip, letta_server_factory):
    """Any supported target: the same backup into the newest server this tool knows."""
    newest = versions.known_server_versions()[-1]
    if newest == roundtrip.new.version:
        pytest.skip(f"the entry's target is already {newest}")
    target = letta_server_factory(newest)
    try:
        restored = letta_compat("restore", "--url", target.url, str(roundtrip.backup_dir))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        verified = letta_compat("verify", "--url", target.url, str(roundtrip.backup_dir))
        assert verified.returncode == 0, verified.stdout
    finally:
        letta_server_factory.stop_soon(target)
