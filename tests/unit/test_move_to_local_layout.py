"""move-to-local without a server: the history conversion, the files written, the refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_letta_compat.errors import LettaCompatError
from pytest_letta_compat.operations import local_layout as layout
from pytest_letta_compat.operations import move_to_local as move

SYSTEM = "You are Sage, a Letta agent. Use send_message to talk."
STATE = {
    "id": "agent-0c3f5b54-7f9e-4f1e-9b57-1c2d3e4f5a6b", "name": "AI/ML Expert", "description": "d",
    "system": SYSTEM, "tags": ["t"], "created_at": "2026-05-01T10:00:00Z",
    "llm_config": {"model": "qwen3", "model_endpoint_type": "openai", "model_endpoint": "http://10.0.0.5:1234/v1",
                   "context_window": 32000},
    "memory": {"blocks": [{"label": "human", "value": "Ada: likes tea", "description": "About\nthe user", "limit": 5000},
                          {"label": "persona", "value": "I am Sage.", "read_only": True}]},
    "message_ids": ["message-sys", "message-u1", "message-a1", "message-r1", "message-a2"],
    "tools": [{"name": "roll_die", "tool_type": "custom", "source_code": "def roll_die(): ..."}],
    "tool_rules": [{"type": "run_first", "tool_name": "roll_die"}],
    "secrets": [{"key": "WEATHER_TOKEN", "value": "tok-secret-123"}],
}
HISTORY = [
    {"id": "message-sys", "message_type": "system_message", "content": SYSTEM + "\n<memory>...</memory>",
     "date": "2026-05-01T10:00:00Z"},
    {"id": "message-old", "message_type": "user_message", "content": "an old question", "date": "2026-05-01T10:00:01Z"},
    {"id": "message-u1", "message_type": "user_message", "content": "roll it", "date": "2026-05-01T10:00:02Z",
     "otid": "o1"},
    {"id": "message-a1", "message_type": "reasoning_message", "reasoning": "I should roll.", "date": "2026-05-01T10:00:03Z"},
    {"id": "message-a1", "message_type": "tool_call_message", "date": "2026-05-01T10:00:03Z",
     "tool_call": {"name": "roll_die", "arguments": "{\"sides\": 6}", "tool_call_id": "call_1"}},
    {"id": "message-r1", "message_type": "tool_return_message", "tool_return": "rolled 6", "status": "success",
     "tool_call_id": "call_1", "date": "2026-05-01T10:00:04Z"},
    {"id": "message-a2", "message_type": "tool_call_message", "date": "2026-05-01T10:00:05Z",
     "tool_call": {"name": "send_message", "arguments": "{\"message\": \"You rolled 6.\"}", "tool_call_id": "call_2"}},
    {"id": "message-r2", "message_type": "tool_return_message", "tool_return": "None", "status": "success",
     "tool_call_id": "call_2", "date": "2026-05-01T10:00:06Z"},
]
LOCAL_ID = "agent-local-0c3f5b54-7f9e-4f1e-9b57-1c2d3e4f5a6b"


def test_history_keeps_ids_tool_calls_results_and_the_in_context_set():
    converted = layout.convert_history(HISTORY, STATE, LOCAL_ID, "lmstudio/qwen3")
    by_id = {m["id"]: m for m in converted.messages}
    assert list(by_id) == ["message-old", "message-u1", "message-a1", "message-r1", "message-a2"]
    assert by_id["message-a1"]["content"] == [{"type": "thinking", "thinking": "I should roll."},
                                              {"type": "toolCall", "id": "call_1", "name": "roll_die",
                                               "arguments": {"sides": 6}}]
    assert by_id["message-r1"]["role"] == "toolResult" and by_id["message-r1"]["toolCallId"] == "call_1"
    assert by_id["message-a2"]["content"] == [{"type": "text", "text": "You rolled 6."}]  # send_message -> text
    assert converted.in_context_ids == ["message-u1", "message-a1", "message-r1", "message-a2"]
    assert (converted.tool_calls, converted.tool_results) == (1, 1)
    assert "1 system-prompt messages" in converted.describe_dropped()


def test_model_mapping_is_reported():
    assert layout.map_model(STATE["llm_config"], None)[0] == "openai-compatible/qwen3"
    assert layout.map_model({"model": "gpt-4o", "model_endpoint_type": "openai",
                             "model_endpoint": "https://api.openai.com/v1"}, None)[0] == "openai/gpt-4o"
    assert layout.map_model(STATE["llm_config"], "lmstudio/x") == ("lmstudio/x", "from --model")


def _source(monkeypatch):
    monkeypatch.setattr(move, "read_backup", lambda d, names: ("0.16.8", [move.SourceAgent(STATE, HISTORY, None)]))
    monkeypatch.setenv(move.PROVING_ENV, "9.9.9")


def test_writes_the_local_layout_with_committed_memory(tmp_path, monkeypatch):
    _source(monkeypatch)
    store = tmp_path / "store"
    report = move.move_to_local(letta_code="9.9.9", storage_dir=store, backup_dir=tmp_path, model="lmstudio/qwen3")
    assert report.ok and [o.status for o in report.outcomes] == ["moved"]
    record = json.loads(layout.agent_record_path(store, LOCAL_ID).read_text())
    assert record["name"] == "AI/ML Expert" and record["model"] == "lmstudio/qwen3"
    assert record["model_settings"] == {"context_window_limit": 32000}
    conv = layout.conversation_dir(store, LOCAL_ID)
    assert json.loads((conv / "manifest.json").read_text())["schema_version"] == 2
    assert json.loads((conv / "conversation.json").read_text())["in_context_message_ids"][0] == "message-u1"
    rows = [json.loads(line) for line in (conv / "messages.jsonl").read_text().splitlines()]
    assert rows[0]["type"] == "session" and rows[1]["parentId"] is None and rows[2]["parentId"] == rows[1]["id"]
    mem = layout.memory_dir(store, LOCAL_ID)
    committed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=mem, capture_output=True,
                               text=True, check=True).stdout.split()
    assert committed == ["system/human.md", "system/persona.md"]
    assert (mem / "system/human.md").read_text() == "---\ndescription: About the user\nlimit: 5000\n---\nAda: likes tea"
    left = json.loads((store / "letta-compat/left-behind" / f"{LOCAL_ID}.json").read_text())
    assert left["tool_environment_variables"] == [{"key": "WEATHER_TOKEN"}]
    assert "tok-secret-123" not in json.dumps(left) and "tok-secret-123" not in report.format()
    assert "archival passages unknown" in report.format()

    again = move.move_to_local(letta_code="9.9.9", storage_dir=store, backup_dir=tmp_path, model="lmstudio/qwen3")
    assert [o.status for o in again.outcomes] == ["already moved"] and again.ok


def test_dry_run_writes_nothing_and_foreign_agents_are_never_overwritten(tmp_path, monkeypatch):
    _source(monkeypatch)
    store = tmp_path / "store"
    plan = move.move_to_local(letta_code="9.9.9", storage_dir=store, backup_dir=tmp_path, dry_run=True)
    assert not store.exists() and plan.outcomes[0].status == "would move"
    assert "openai-compatible/qwen3" in plan.format()
    layout.agent_record_path(store, LOCAL_ID).parent.mkdir(parents=True)
    layout.agent_record_path(store, LOCAL_ID).write_text(json.dumps({"id": LOCAL_ID, "name": "mine"}))
    with pytest.raises(LettaCompatError, match="not empty"):
        move.move_to_local(letta_code="9.9.9", storage_dir=store, backup_dir=tmp_path)
    report = move.move_to_local(letta_code="9.9.9", storage_dir=store, backup_dir=tmp_path, merge=True)
    assert not report.ok and "never overwritten" in report.outcomes[0].reason
    assert json.loads(layout.agent_record_path(store, LOCAL_ID).read_text())["name"] == "mine"


@pytest.mark.parametrize("args, says", [
    (["--letta-code", "0.0.1", "--storage-dir", "S", "--url", "http://127.0.0.1:9"], "not proven"),
    (["--letta-code", "0.34.12", "--storage-dir", "S"], "give the source"),
    (["--letta-code", "0.34.12", "--storage-dir", "S", "--backup", "/nonexistent"], "no such directory"),
])
def test_bad_input_is_one_line_and_exit_2(args, says, tmp_path):
    run = subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", "move-to-local", *args],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
