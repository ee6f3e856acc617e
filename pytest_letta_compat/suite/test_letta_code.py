"""Per server × Letta Code pair: the real CLI completes headless turns through the server and
the fake LLM, its agent is visible over REST, and a second run resumes it (the path that
broke in the seed incident's pairing)."""

from __future__ import annotations

import json
import uuid

import pytest

from pytest_letta_compat.provision.fake_llm import REPLY_PREFIX

pytestmark = pytest.mark.letta_check("letta_code")


def _prompt(what: str) -> str:
    return f"{what} {uuid.uuid4().hex[:12]}"  # unique: the fake LLM is shared by the session


def _turn(letta_code, prompt: str, *args: str) -> dict:
    result = letta_code("-p", prompt, *args, json=True)
    assert result.returncode == 0, f"`{result.command}` exited {result.returncode}: {result.error_line()}"
    assert result.json and result.json.get("subtype") == "success", f"no JSON result: {result.stdout[-1500:]}"
    return result.json


def _new_agent_turn(letta_code, fake_llm, prompt: str) -> dict:
    return _turn(letta_code, prompt, "--new-agent", "-m", f"openai-proxy/{fake_llm.model}")


def _llm_request_with(fake_llm, text: str) -> dict:
    """The last chat completion request the fake LLM received that carries ``text``."""
    bodies = [r["body"] for r in fake_llm.requests
              if r["path"].endswith("/chat/completions") and text in json.dumps(r["body"])]
    assert bodies, f"the fake LLM never received {text!r}"
    return bodies[-1]


def _messages_with(messages: list[dict], message_type: str, text: str) -> list[dict]:
    return [m for m in messages if m.get("message_type") == message_type and text in json.dumps(m.get("content"))]


def test_headless_turn_completes_through_the_server_and_the_fake_llm(letta_code_entry, letta_code, fake_llm):
    version = letta_code("--version")
    assert version.returncode == 0 and version.stdout.split()[:1] == [letta_code_entry.version], version.stdout

    prompt = _prompt("hello from the compat suite")
    result = _new_agent_turn(letta_code, fake_llm, prompt)

    request = _llm_request_with(fake_llm, prompt)
    assert request["model"] == fake_llm.model
    text, tool_call, _ = fake_llm.chat_plan(request)
    expected = text if tool_call is None else json.loads(tool_call["arguments"]).get("message")
    assert result["result"] == expected and expected.startswith(REPLY_PREFIX)
    assert result["agent_id"].startswith("agent-")


def test_agent_it_created_is_visible_over_rest_with_its_messages(letta_code, letta_client, fake_llm):
    prompt = _prompt("remember this turn")
    result = _new_agent_turn(letta_code, fake_llm, prompt)

    agent = letta_client.get(f"/v1/agents/{result['agent_id']}").raise_for_status().json()
    assert agent["llm_config"]["model"] == fake_llm.model
    messages = letta_client.get(f"/v1/agents/{agent['id']}/messages", params={"limit": 100}).raise_for_status().json()
    assert len(_messages_with(messages, "user_message", prompt)) == 1
    assert [m["content"] for m in messages if m.get("message_type") == "assistant_message"] == [result["result"]]


def test_second_run_in_the_same_directory_resumes_the_agent_and_conversation(letta_code, letta_client, fake_llm):
    first_prompt, second_prompt = _prompt("first run"), _prompt("second run")
    first = _new_agent_turn(letta_code, fake_llm, first_prompt)
    second = _turn(letta_code, second_prompt)  # same HOME and directory, no agent named
    assert second["agent_id"] == first["agent_id"]

    conversation = first["conversation_id"]
    if conversation == "default":  # Letta Code before conversations: one thread per agent
        assert second["conversation_id"] == "default"
        resumed_prompt = second_prompt
        path = f"/v1/agents/{first['agent_id']}/messages"
    else:  # each headless run opens a conversation; --conversation resumes the first one
        assert second["conversation_id"] != conversation
        resumed_prompt = _prompt("back in the first conversation")
        third = _turn(letta_code, resumed_prompt, "--conversation", conversation)
        assert (third["agent_id"], third["conversation_id"]) == (first["agent_id"], conversation)
        path = f"/v1/conversations/{conversation}/messages"

    # the resumed turn reached the model with the first turn still in its context
    assert first_prompt in json.dumps(_llm_request_with(fake_llm, resumed_prompt)["messages"])
    history = letta_client.get(path, params={"limit": 100, "order": "asc"}).raise_for_status().json()
    said = [p for m in history for p in (first_prompt, resumed_prompt) if _messages_with([m], "user_message", p)]
    assert said == [first_prompt, resumed_prompt]
