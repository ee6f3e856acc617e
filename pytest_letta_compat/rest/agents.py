"""Small REST helpers for talking to any supported Letta server version."""

from __future__ import annotations

from typing import Any

import httpx


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
