"""Per [[upgrade]] entry: a model provider an operator configures by environment still serves new
agents on the new release (docs/breakages.md row 6).

Ollama: the new release starts with ``OLLAMA_BASE_URL`` pointing at the fake LLM speaking as a
real Ollama (``provision/fake_ollama.py``: native ``/api/*``, the OpenAI API only under ``/v1``),
spelled as Ollama documents it (``http://host:11434``) and with ``/v1``. A new agent on the
``ollama/<model>`` handle must answer a message. letta#3142: unless the URL ends in ``/v1``, such
an agent's chat goes to ``<OLLAMA_BASE_URL>/chat/completions`` and Ollama answers ``404 page not
found``: by handle on 0.16.4, with the ``llm_config`` that ``GET /v1/models/`` lists on 0.16.2 up
to 0.16.8; on 0.16.2 the handle itself answers 400 in both spellings (docs/breakages.md row 6 has
the source lines). The shipped matrices declare both.

The server runs on a fresh database of the new release: the breakage is in the release's code,
not in the data an upgrade carries (agents created before the upgrade keep the endpoint they
were stored with).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from pytest_letta_compat.provision.fake_llm_replies import REPLY_PREFIX
from pytest_letta_compat.provision.fake_ollama import FakeOllama
from pytest_letta_compat.rest.agents import agent_configs, assistant_texts

# The spelling of OLLAMA_BASE_URL -> the check it belongs to: a declaration names the releases
# where one spelling fails without covering the other (matrices/default.toml).
SPELLINGS = {"documented": "ollama", "with_v1": "ollama_v1"}


@pytest.fixture(scope="session")
def fake_ollama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOllama]:
    """The fake LLM as a strict Ollama endpoint, shared by every path's servers."""
    with FakeOllama(log_path=tmp_path_factory.mktemp("fake-ollama") / "requests.log") as fake:
        yield fake


def _exchange(client: httpx.Client, fake: FakeOllama, version: str, how: str, fields: dict,
              embedding_config: dict) -> str | None:
    """Create an agent with ``fields`` and send it a message: None when it answers through the
    fake Ollama, else what went wrong (one line)."""
    body = {"name": f"ollama-{uuid.uuid4().hex[:8]}", "embedding_config": embedding_config,
            "memory_blocks": [{"label": "human", "value": "The user is a tester."},
                              {"label": "persona", "value": "I am a helpful test agent."}], **fields}
    created = client.post("/v1/agents/", json=body)
    if created.status_code != 200:
        return f"{how}: creating the agent answers {created.status_code} {created.text[:300]}"
    asked = len(fake.requests)
    sent = client.post(f"/v1/agents/{created.json()['id']}/messages",
                       json={"messages": [{"role": "user", "content": "hello ollama"}]})
    paths = sorted({f"{r['method']} {r['path']}" for r in fake.requests[asked:]})
    if sent.status_code != 200:
        return (f"{how}: the agent's message answers {sent.status_code} {sent.text[:300]}; "
                f"Ollama was asked {paths or 'nothing'}")
    texts = assistant_texts(sent.json())
    if not any(REPLY_PREFIX in t for t in texts):
        return f"{how}: the agent did not answer through Ollama ({texts}); Ollama was asked {paths or 'nothing'}"
    return None


@pytest.mark.parametrize("spelling", [pytest.param(s, marks=pytest.mark.letta_check(check), id=s)
                                      for s, check in SPELLINGS.items()])
def test_new_agent_on_an_ollama_model_answers(spelling, letta_upgrade_entry, letta_server_factory,
                                               letta_fake_llm, fake_ollama):
    """On the new release with ``OLLAMA_BASE_URL`` set, ``ollama/<model>`` is listed, and a new
    agent on it answers a message through Ollama's ``/v1``: one created by the handle (as the SDK
    and Letta Code do), and one created with the ``llm_config`` that ``GET /v1/models/`` lists (as
    the ADE does). The embedding is the default fake's: only the chat model is Ollama's."""
    base = fake_ollama.ollama_url + ("/v1" if spelling == "with_v1" else "")
    version = letta_upgrade_entry.to_version
    handle = f"ollama/{fake_ollama.model}"
    embedding = agent_configs(letta_fake_llm.base_url)["embedding_config"]
    stack = letta_server_factory(version, env={"OLLAMA_BASE_URL": base})
    try:
        with stack.client() as client:
            models = client.get("/v1/models/").raise_for_status().json()
            listed = [m for m in models if m.get("handle") == handle]
            others = sorted(m.get("handle") or "" for m in models if (m.get("handle") or "").startswith("ollama"))
            assert listed, (f"Letta {version} with OLLAMA_BASE_URL={base} lists no {handle} "
                            f"(its ollama models: {others or 'none'})")
            problems = [p for p in (
                _exchange(client, fake_ollama, version, "by handle", {"model": handle}, embedding),
                _exchange(client, fake_ollama, version, f"by the listed llm_config (model_endpoint "
                          f"{listed[0].get('model_endpoint')})", {"llm_config": listed[0]}, embedding),
            ) if p]
    except httpx.HTTPError as exc:
        pytest.fail(f"Letta {version} with OLLAMA_BASE_URL={base}: {type(exc).__name__}: {exc}")
    finally:
        letta_server_factory.stop_soon(stack)
    assert not problems, (f"Letta {version} with OLLAMA_BASE_URL={base}, a new agent on {handle}:\n  "
                          + "\n  ".join(problems))
