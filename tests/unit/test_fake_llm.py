"""Wire-protocol tests for the fake OpenAI server, driven by the real `openai` SDK and raw httpx.

Letta talks to the fake through the official SDK, so "the SDK parses it" is the contract.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the wire-protocol tests need the test extra: pip install -e '.[test]'")

from pytest_letta_compat.provision.fake_llm import FakeLLM  # noqa: E402

SEND_MESSAGE = {
    "type": "function",
    "function": {
        "name": "send_message",
        "description": "Sends a message to the human user.",
        "parameters": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "inner_thoughts": {"type": "string"},
                "request_heartbeat": {"type": "boolean"},
            },
            "required": ["message", "inner_thoughts"],
        },
    },
}
ARCHIVAL_SEARCH = {
    "type": "function",
    "function": {
        "name": "archival_memory_search",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "page": {"type": ["integer", "null"]},
                           "tags": {"type": "array"}, "exact": {"type": "boolean"}},
            "required": ["query", "page", "tags", "exact"],
        },
    },
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    log = tmp_path_factory.mktemp("fake-llm") / "requests.log"
    with FakeLLM(embedding_dim=64, log_path=log) as server:
        yield server


@pytest.fixture
def client(fake):
    with openai.OpenAI(api_key=fake.api_key, base_url=fake.base_url, max_retries=0, timeout=10) as c:
        yield c


def user(text):
    return {"role": "user", "content": text}


def test_env_and_urls_point_at_loopback_port(fake):
    assert fake.port > 0
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
    assert fake.server_env() == {"OPENAI_API_KEY": fake.api_key, "OPENAI_API_BASE": fake.base_url}


def test_models_list_and_retrieve(client, fake):
    ids = [m.id for m in client.models.list()]
    assert ids == ["fake-gpt", "fake-embedding"]
    assert client.models.retrieve("fake-gpt").owned_by == "fake-llm"
    # Without the /v1 prefix too, as some clients strip it.
    assert httpx.get(f"{fake.url}/models").json()["object"] == "list"


def test_embeddings_float_are_deterministic_unit_vectors(client):
    a = client.embeddings.create(model="fake-embedding", input=["hello", "world"], encoding_format="float")
    b = client.embeddings.create(model="fake-embedding", input="hello", encoding_format="float")
    assert [d.index for d in a.data] == [0, 1]
    assert all(len(d.embedding) == 64 for d in a.data)
    assert a.data[0].embedding == b.data[0].embedding  # same text -> same vector
    assert a.data[0].embedding != a.data[1].embedding
    assert abs(sum(x * x for x in a.data[0].embedding) - 1.0) < 1e-5
    assert a.usage.prompt_tokens == a.usage.total_tokens > 0


def test_embeddings_base64_default_decodes_to_same_vector(client, fake):
    # Recent SDKs (and so Letta) ask for base64 unless told otherwise, then decode it themselves.
    sdk = client.embeddings.create(model="fake-embedding", input="hello")
    flt = client.embeddings.create(model="fake-embedding", input="hello", encoding_format="float")
    assert sdk.data[0].embedding == flt.data[0].embedding
    raw = httpx.post(f"{fake.base_url}/embeddings", json={"input": "hello", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<64f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == flt.data[0].embedding


def test_embeddings_token_ids_and_dimensions(client):
    one = client.embeddings.create(model="fake-embedding", input=[1, 2, 3], dimensions=8)
    many = client.embeddings.create(model="fake-embedding", input=[[1, 2, 3], [4]], dimensions=8)
    assert len(one.data) == 1 and len(many.data) == 2
    assert len(one.data[0].embedding) == 8
    assert one.data[0].embedding == many.data[0].embedding


def test_chat_plain_text_echoes_last_user_message(client):
    resp = client.chat.completions.create(model="fake-gpt", messages=[
        {"role": "system", "content": "be nice"}, user("first"), {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "what is up?"}]}])
    choice = resp.choices[0]
    assert choice.message.content == "fake-llm reply to: what is up?"
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert resp.model == "fake-gpt" and resp.id.startswith("chatcmpl-")
    assert resp.usage.prompt_tokens > 0 and resp.usage.total_tokens > resp.usage.prompt_tokens
    # Letta reads the cached/reasoning token details; dumped so old SDKs without typed fields agree.
    usage = resp.model_dump()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_letta_json_wrapped_user_message_is_unwrapped(client):
    wrapped = json.dumps({"type": "user_message", "message": "hi there", "time": "2025-01-01"})
    resp = client.chat.completions.create(model="fake-gpt", messages=[user(wrapped)])
    assert resp.choices[0].message.content == "fake-llm reply to: hi there"


def test_send_message_tool_is_called_with_schema_filled_args(client):
    resp = client.chat.completions.create(model="fake-gpt", messages=[user("hello agent")],
                                          tools=[ARCHIVAL_SEARCH, SEND_MESSAGE], tool_choice="auto")
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "send_message"
    args = json.loads(call.function.arguments)
    assert args["message"] == "fake-llm reply to: hello agent"
    assert args["inner_thoughts"] and args["request_heartbeat"] is False


def test_tool_call_ids_are_unique_per_response(client):
    kwargs = {"model": "fake-gpt", "messages": [user("same")], "tools": [SEND_MESSAGE]}
    ids = {client.chat.completions.create(**kwargs).choices[0].message.tool_calls[0].id for _ in range(3)}
    assert len(ids) == 3


def test_after_send_message_result_reply_is_plain_text(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "send_message", "arguments": "{}"}}
    messages = [user("hello"), {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "OK"}'}]
    resp = client.chat.completions.create(model="fake-gpt", messages=messages, tools=[SEND_MESSAGE])
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == "fake-llm reply to: hello"


def test_tool_choice_required_and_named(client):
    req = client.chat.completions.create(model="fake-gpt", messages=[user("x")], tools=[ARCHIVAL_SEARCH],
                                         tool_choice="required")
    args = json.loads(req.choices[0].message.tool_calls[0].function.arguments)
    assert args == {"query": "", "page": 0, "tags": [], "exact": False}
    named = client.chat.completions.create(
        model="fake-gpt", messages=[user("x")], tools=[SEND_MESSAGE, ARCHIVAL_SEARCH],
        tool_choice={"type": "function", "function": {"name": "archival_memory_search"}})
    assert named.choices[0].message.tool_calls[0].function.name == "archival_memory_search"
    # Plain "auto" with no send_message offered means the model just talks.
    auto = client.chat.completions.create(model="fake-gpt", messages=[user("x")], tools=[ARCHIVAL_SEARCH])
    assert auto.choices[0].message.content == "fake-llm reply to: x"


def test_stream_text_reassembles_and_reports_usage(client):
    kwargs = {"model": "fake-gpt", "messages": [user("stream me please")]}
    expected = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1 and "".join(content) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    # Without include_usage there is no usage chunk.
    plain = list(client.chat.completions.create(**kwargs, stream=True))
    assert all(c.choices and c.usage is None for c in plain)


def test_stream_tool_call_reassembles_arguments(client):
    kwargs = {"model": "fake-gpt", "messages": [user("call a tool")], "tools": [SEND_MESSAGE]}
    name, call_id, parts, finish = None, None, [], None
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        choice = chunk.choices[0]
        for tc in choice.delta.tool_calls or []:
            assert tc.index == 0
            name, call_id = tc.function.name or name, tc.id or call_id
            parts.append(tc.function.arguments or "")
        finish = choice.finish_reason or finish
    assert name == "send_message" and call_id.startswith("call_") and finish == "tool_calls"
    assert len([p for p in parts if p]) > 1
    assert json.loads("".join(parts))["message"] == "fake-llm reply to: call a tool"


def test_stream_raw_sse_framing(fake):
    body = {"model": "fake-gpt", "messages": [user("raw")], "stream": True}
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_concurrent_requests_all_succeed(fake):
    def one(i):
        with openai.OpenAI(api_key="anything", base_url=fake.base_url, max_retries=0, timeout=10) as c:
            text = c.chat.completions.create(model="fake-gpt", messages=[user(f"n{i}")]).choices[0].message.content
            streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                model="fake-gpt", messages=[user(f"n{i}")], stream=True))
            emb = c.embeddings.create(model="fake-embedding", input=f"n{i}").data[0].embedding
            return text, streamed, len(emb)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [(f"fake-llm reply to: n{i}",) * 2 + (64,) for i in range(16)]


def test_errors_use_openai_format(client, fake):
    r = httpx.post(f"{fake.base_url}/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    bad = httpx.post(f"{fake.base_url}/chat/completions", content=b"{not json",
                     headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "message" in bad.json()["error"]
    with pytest.raises(openai.NotFoundError):
        client.post("/responses-that-do-not-exist", cast_to=object, body={})


def test_requests_are_recorded_and_logged(fake):
    before = len(fake.requests)
    httpx.post(f"{fake.base_url}/chat/completions", json={"model": "m", "messages": [user("rec")]},
               headers={"Authorization": "Bearer whatever"})
    rec = fake.requests[before]
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions"
    assert rec["body"]["messages"][0]["content"] == "rec" and rec["time"] > 0
    assert "/v1/chat/completions" in Path(fake.log_path).read_text()


def test_cli_prints_url_serves_and_exits_on_sigterm():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "pytest_letta_compat.provision.fake_llm", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("FAKE_LLM_URL=http://127.0.0.1:")
        assert httpx.get(line.split("=", 1)[1] + "/models", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stop_releases_port_and_idle_connections():
    fake = FakeLLM(keep_alive=True).start()
    with httpx.Client() as keepalive:  # holds an idle keep-alive connection open across stop()
        assert keepalive.get(f"{fake.base_url}/models").status_code == 200
        fake.stop()
        done = threading.Event()
        threading.Thread(target=lambda: (fake.stop(), done.set()), daemon=True).start()
        assert done.wait(5)  # stop() is idempotent and does not hang
        with pytest.raises(httpx.TransportError):
            keepalive.get(f"{fake.base_url}/models")


def test_every_answer_closes_its_connection_unless_keep_alive_is_asked(fake):
    """Letta drops its OpenAI clients without closing them; an idle kept-alive connection of one is
    what makes its next database connect stall for 60 s (tests/tools/test_stall_cause.py)."""
    import socket

    for url, closes in ((fake.url, True), (None, False)):
        server = None
        if url is None:
            server = FakeLLM(keep_alive=True).start()
            url = server.url
        try:
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(1.0)
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                    ended = True  # the server closed the connection
                except TimeoutError:
                    ended = False
            assert (b"Connection: close" in data) is closes
            assert ended is closes
            assert data.startswith(b"HTTP/1.1 200")
        finally:
            if server is not None:
                server.stop()
