"""Small REST helpers for talking to any supported Letta server version."""

from __future__ import annotations

import time
import warnings
from typing import Any

import httpx

# Letta (any release) can hang one request for asyncpg's 60 s connect timeout, then answer 500, when
# the garbage collector tears down a dropped OpenAI client's kept-alive connection at the wrong
# moment (docs/internals.md, "Known Letta bug"). Our fake LLM closes its connections, which takes
# the cause away; this retry stays as the last resort. A 5xx that took this long is that stall.
KNOWN_STALL_S = 50.0


class LettaKnownStall(UserWarning):
    """A request hit Letta's known 60 s stall and was sent again (as the official SDK does)."""


def agent_configs(llm_base_url: str, model: str = "fake-gpt", embedding_model: str = "fake-embedding",
                  embedding_dim: int = 1536) -> dict[str, Any]:
    """Explicit llm/embedding configs: the one request shape every version accepts
    (0.11.x refuses ``openai-proxy/...`` handles, 0.16.x lists no proxy embeddings)."""
    return {
        "llm_config": {"model": model, "model_endpoint_type": "openai", "model_endpoint": llm_base_url,
                       "context_window": 128000},
        "embedding_config": {"embedding_endpoint_type": "openai", "embedding_endpoint": llm_base_url,
                             "embedding_model": embedding_model, "embedding_dim": embedding_dim},
    }


def create_agent(client: httpx.Client, name: str, llm_base_url: str, **fields: Any) -> dict:
    body = {
        "name": name,
        "memory_blocks": [{"label": "human", "value": "The user is a tester."},
                          {"label": "persona", "value": "I am a helpful test agent."}],
        **agent_configs(llm_base_url),
        **fields,
    }
    resp = client.post("/v1/agents/", json=body)
    resp.raise_for_status()
    return resp.json()


def send_message(client: httpx.Client, agent_id: str, text: str) -> dict:
    resp = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": text}]})
    resp.raise_for_status()
    return resp.json()


def empty_archive(client: httpx.Client, agent_id: str) -> None:
    """Leave the agent an archive with no passage, as an operator who deleted its memories does:
    one passage stored (the archive is made then), then deleted (for good, before 0.13.0)."""
    stored = client.post(f"/v1/agents/{agent_id}/archival-memory",
                         json={"text": "a passage deleted before the upgrade"}).raise_for_status()
    client.delete(f"/v1/agents/{agent_id}/archival-memory/{stored.json()[0]['id']}").raise_for_status()


def insert_passage(client: httpx.Client, agent_id: str, text: str) -> None:
    """Add ``text`` to the agent's archival memory. When Letta's known stall answers it 500 after
    ~60 s and the passage was not stored, it is sent once more, with a warning naming the stall (a
    check about something else must not fail on it; a second failure still fails)."""
    began = time.monotonic()
    resp = client.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": text})
    took = time.monotonic() - began
    if resp.status_code >= 500 and took >= KNOWN_STALL_S:
        stored = client.get(f"/v1/agents/{agent_id}/archival-memory", params={"limit": 1000})
        passages = stored.json() if stored.is_success else []
        if isinstance(passages, list) and any(isinstance(p, dict) and p.get("text") == text for p in passages):
            return
        warnings.warn(LettaKnownStall(
            f"Letta answered an archival insert {resp.status_code} after {took:.0f} s: its known stall "
            "(docs/internals.md, \"Known Letta bug\"); sent once more"), stacklevel=2)
        resp = client.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": text})
    resp.raise_for_status()


def blocks_of(state: dict) -> list[dict]:
    """An agent state's memory blocks: under ``memory`` on every release, at the top on some."""
    return (state.get("memory") or {}).get("blocks") or state.get("blocks") or []


def assistant_texts(response: dict) -> list[str]:
    """The assistant's replies in a send-message response, across response formats."""
    texts = []
    for m in response.get("messages", []):
        if m.get("message_type") == "assistant_message":
            content = m.get("content") if "content" in m else m.get("assistant_message")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            texts.append(content or "")
    return texts
