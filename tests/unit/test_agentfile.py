"""Legacy (0.11.x) exports → AgentFileSchema, and full histories merged into agent files,
on the shapes 0.11.3 really produces (no server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

from pytest_letta_compat.operations.agentfile import (convert_legacy, group_history, role_counts,
                                                     with_full_history)

T = "2026-01-17T18:00:{:02d}+00:00"


def _typed(i: int, kind: str, **fields) -> dict:
    return {"id": f"message-{i:04d}", "date": T.format(i), "message_type": kind, "otid": f"{i}-{kind}", **fields}


def exchange(i: int, text: str) -> list[dict]:
    """One 0.11.3 turn as listed with use_assistant_message=false: user, reasoning + call, return."""
    call = f"call_{i}"
    return [
        _typed(i, "user_message", content=text),
        _typed(i + 1, "reasoning_message", reasoning="thinking", source="non_reasoner_model"),
        _typed(i + 1, "tool_call_message", tool_call={"name": "send_message", "tool_call_id": call,
                                                      "arguments": json.dumps({"message": f"reply to {text}"})}),
        _typed(i + 2, "tool_return_message", tool_call_id=call, status="success", tool_return="Sent message successfully.",
               name="send_message", stdout=None, stderr=None),
    ]


HISTORY = [_typed(0, "system_message", content="You are Letta.")] + [
    m for n in range(5) for m in exchange(1 + 3 * n, f"question {n}")]


def raw(role: str, second: int, text: str, **fields) -> dict:
    return {"created_at": T.format(second).replace("+", ".123456+"), "updated_at": T.format(second), "group_id": None,
            "model": "fake-gpt", "name": None, "role": role, "content": [{"type": "text", "text": text}],
            "tool_call_id": None, "tool_calls": [], "tool_returns": [], **fields}


def legacy_export() -> dict:
    """What 0.11.3 exports: the system message and only the LAST exchange (max_steps cut-off)."""
    call = "call_13"
    return {
        "agent_type": "memgpt_v2_agent", "name": "AI-ML Expert", "system": "You are Letta.", "description": None,
        "created_at": T.format(0), "updated_at": T.format(0), "version": "0.11.3", "metadata_": {"team": "ml"},
        "llm_config": {"model": "fake-gpt", "model_endpoint_type": "openai", "context_window": 128000},
        "embedding_config": {"embedding_endpoint_type": "openai", "embedding_model": "fake-embedding",
                             "embedding_dim": 1536},
        "message_buffer_autoclear": False, "multi_agent_group": None,
        "core_memory": [{"label": "human", "value": "The user.", "limit": 5000, "description": None,
                         "is_template": False, "template_name": None, "metadata_": {}, "created_at": T.format(0),
                         "updated_at": T.format(0)}],
        "tools": [{"name": "roll_die", "description": "Roll a die.", "source_code": "def roll_die(): ...",
                   "source_type": "python", "json_schema": {"name": "roll_die", "parameters": {"properties": {}}},
                   "args_json_schema": None, "return_char_limit": 6000, "tags": [], "tool_type": "custom",
                   "created_at": T.format(0), "updated_at": T.format(0), "metadata_": {}}],
        "tags": [{"tag": "prod"}], "tool_exec_environment_variables": [{"key": "TOKEN", "value": "s3cret",
                                                                        "description": None}],
        "tool_rules": [],
        "messages": [raw("system", 0, "You are Letta."), raw("user", 13, "question 4"),
                     raw("assistant", 14, "thinking", tool_call_id=call, tool_calls=[
                         {"id": call, "type": "function",
                          "function": {"name": "send_message", "arguments": '{"message": "reply to question 4"}'}}]),
                     raw("tool", 15, '{"status": "OK", "message": "Sent message successfully.", "time": "x"}',
                         name="send_message", tool_call_id=call, tool_returns=[{"status": "success", "stdout": None,
                                                                                 "stderr": None}])],
        "in_context_message_indices": [0, 1, 2, 3],
    }


def test_role_counts_count_stored_messages_not_typed_ones():
    assert len(HISTORY) == 21 and len(group_history(HISTORY)) == 16
    assert role_counts(HISTORY) == {"assistant": 5, "system": 1, "tool": 5, "user": 5}


def test_convert_legacy_keeps_agent_blocks_tools_and_hides_secret_values():
    converted = convert_legacy(legacy_export())
    agent = converted["agents"][0]
    assert set(converted) >= {"agents", "blocks", "tools", "groups", "files", "sources", "mcp_servers", "metadata"}
    assert (agent["name"], agent["system"], agent["agent_type"]) == ("AI-ML Expert", "You are Letta.", "memgpt_v2_agent")
    assert agent["tags"] == ["prod"] and agent["metadata"] == {"team": "ml"}
    assert [(b["label"], b["value"]) for b in converted["blocks"]] == [("human", "The user.")]
    assert agent["block_ids"] == ["block-0"] and agent["tool_ids"] == ["tool-0"]
    assert converted["tools"][0]["source_code"] == "def roll_die(): ..."
    assert agent["tool_exec_environment_variables"] == {"TOKEN": ""}
    assert "s3cret" not in json.dumps(converted)
    assert [m["id"] for m in agent["messages"]] == agent["in_context_message_ids"] == [f"message-{i}" for i in range(4)]


def test_convert_legacy_with_full_history_restores_what_the_export_dropped():
    in_context = ["message-0000", "message-0013", "message-0014", "message-0015"]
    agent = convert_legacy(legacy_export(), HISTORY, in_context_ids=in_context)["agents"][0]
    messages = agent["messages"]
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant", "tool"] * 5
    assert [m["content"][0]["text"] for m in messages if m["role"] == "user"] == [f"question {n}" for n in range(5)]
    # the last exchange is the export's own copy (microseconds, packed tool return), earlier ones are rebuilt
    assert messages[-1]["content"][0]["text"].startswith('{"status": "OK"')
    assert messages[-2]["created_at"].startswith("2026-01-17T18:00:14.123456")
    rebuilt_call = messages[2]
    assert rebuilt_call["tool_calls"][0]["function"]["name"] == "send_message"
    assert messages[3]["tool_returns"][0]["tool_call_id"] == rebuilt_call["tool_calls"][0]["id"] == "call_1"
    times = [datetime.fromisoformat(m["created_at"]) for m in messages]
    assert times == sorted(times) and len(set(times)) == len(times)  # strictly increasing
    assert agent["in_context_message_ids"] == ["message-0", "message-13", "message-14", "message-15"]


def test_with_full_history_fills_an_agent_file_export():
    agent_file = convert_legacy(legacy_export())  # stands in for a 0.12+ export of ~50 messages
    full = with_full_history(agent_file, HISTORY, [g[0]["id"] for g in group_history(HISTORY)][-4:])
    assert len(full["agents"][0]["messages"]) == 16
    assert len(agent_file["agents"][0]["messages"]) == 4  # the input is not modified


def test_convert_legacy_refuses_an_agent_file():
    with pytest.raises(ValueError, match="legacy"):
        convert_legacy({"agents": []})


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", *args], capture_output=True, text=True)


def test_convert_command_writes_an_agent_file(tmp_path):
    (tmp_path / "legacy.json").write_text(json.dumps(legacy_export()))
    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    run = cli("convert", str(tmp_path / "legacy.json"), str(tmp_path / "agent.af"), "--history",
              str(tmp_path / "history.json"))
    assert run.returncode == 0, run.stderr
    assert len(json.loads((tmp_path / "agent.af").read_text())["agents"][0]["messages"]) == 16


def test_convert_command_names_a_file_that_is_not_a_legacy_export(tmp_path):
    (tmp_path / "broken.json").write_text('{"agents": [')
    run = cli("convert", str(tmp_path / "broken.json"), str(tmp_path / "out.af"))
    assert run.returncode == 2 and str(tmp_path / "broken.json") in run.stderr and "Traceback" not in run.stderr
