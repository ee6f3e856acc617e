"""The strict Ollama mode of the fake LLM answers as a real Ollama: native /api/*, OpenAI only under /v1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from pytest_letta_compat.provision.fake_llm import FakeLLM
from pytest_letta_compat.provision.fake_ollama import FakeOllama

CHAT = {"model": "fake-llama:latest", "messages": [{"role": "user", "content": "hi"}]}


def _call(url: str, method: str, body: dict | None = None) -> tuple[int, str, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture
def ollama():
    fake = FakeOllama()
    fake.chat_delay = 0
    with fake:
        yield fake


def test_tags_list_the_chat_and_embedding_models(ollama: FakeOllama) -> None:
    status, _, raw = _call(ollama.url + "/api/tags", "GET")
    assert status == 200
    names = [m["name"] for m in json.loads(raw)["models"]]
    assert names == ["fake-llama:latest", "fake-embed:latest"]


def test_show_declares_tools_and_context_window_as_letta_reads_them(ollama: FakeOllama) -> None:
    status, _, raw = _call(ollama.url + "/api/show", "POST", {"name": "fake-llama:latest"})
    shown = json.loads(raw)
    assert status == 200 and "tools" in shown["capabilities"]
    arch = shown["model_info"]["general.architecture"]
    assert shown["model_info"][f"{arch}.context_length"] == ollama.context_window
    status, _, raw = _call(ollama.url + "/api/show", "POST", {"model": "fake-embed:latest"})
    shown = json.loads(raw)
    assert shown["capabilities"] == ["embedding"]
    assert shown["model_info"][f"{arch}.embedding_length"] == ollama.embedding_dim
    assert _call(ollama.url + "/api/show", "POST", {"name": "nope"})[0] == 404


@pytest.mark.parametrize("path", ["/chat/completions", "/models", "/embeddings"])
def test_openai_paths_without_v1_answer_ollamas_404(ollama: FakeOllama, path: str) -> None:
    method = "GET" if path == "/models" else "POST"
    status, ctype, raw = _call(ollama.url + path, method, CHAT if method == "POST" else None)
    assert (status, ctype, raw) == (404, "text/plain", b"404 page not found")


def test_chat_under_v1_answers(ollama: FakeOllama) -> None:
    status, _, raw = _call(ollama.url + "/v1/chat/completions", "POST", CHAT)
    assert status == 200 and json.loads(raw)["choices"][0]["message"]


def test_default_fake_still_answers_without_v1_and_has_no_native_api() -> None:
    fake = FakeLLM()
    fake.chat_delay = 0
    with fake:
        assert _call(fake.url + "/chat/completions", "POST", CHAT)[0] == 200
        assert _call(fake.url + "/api/tags", "GET")[0] == 404
