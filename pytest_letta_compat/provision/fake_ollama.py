"""The fake LLM speaking as a real Ollama server does (stdlib only).

A real Ollama answers its native API under ``/api/...`` (``GET /api/tags``, ``POST /api/show``,
``GET /api/version``) and the OpenAI-compatible API only under ``/v1/...``; any other path gets
``404 page not found`` as plain text. The default :class:`FakeLLM` also answers OpenAI paths
without ``/v1``, which would hide a server that forgets it (letta#3142: Letta 0.16.2 and 0.16.4
post an Ollama model's chat to ``<OLLAMA_BASE_URL>/chat/completions``). Replies to chat and
embeddings are the default fake's, under ``/v1`` only.
"""

from __future__ import annotations

from typing import Any

from .fake_llm import CREATED, FakeLLM

ARCHITECTURE = "llama"  # /api/show's model_info keys are "<general.architecture>.<field>"
MODIFIED_AT = "2023-11-14T22:13:20Z"  # CREATED as Ollama spells its timestamps


class FakeOllama(FakeLLM):
    """Strict Ollama endpoint: native ``/api/*``, OpenAI-compatible only under ``/v1``."""

    strict_v1 = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "fake-llama:latest",
                 embedding_model: str = "fake-embed:latest", **kwargs: Any):
        super().__init__(host, port, model=model, embedding_model=embedding_model, **kwargs)

    @property
    def ollama_url(self) -> str:
        """``OLLAMA_BASE_URL`` as Ollama's docs spell it (no ``/v1``)."""
        return self.url

    def _details(self) -> dict:
        return {"parent_model": "", "format": "gguf", "family": ARCHITECTURE, "families": [ARCHITECTURE],
                "parameter_size": "8.0B", "quantization_level": "Q4_0"}

    def _tag(self, name: str) -> dict:
        return {"name": name, "model": name, "modified_at": MODIFIED_AT, "size": 4661224676,
                "digest": f"{CREATED:064x}"[-64:], "details": self._details()}

    def _show(self, name: str) -> dict | None:
        if name == self.model:
            caps, info = ["completion", "tools"], {f"{ARCHITECTURE}.context_length": self.context_window,
                                                     f"{ARCHITECTURE}.embedding_length": 4096}
        elif name == self.embedding_model:
            caps, info = ["embedding"], {f"{ARCHITECTURE}.context_length": 8192,
                                         f"{ARCHITECTURE}.embedding_length": self.embedding_dim}
        else:
            return None
        return {"modelfile": f"FROM {name}\n", "parameters": "", "template": "{{ .Prompt }}",
                "details": self._details(), "model_info": {"general.architecture": ARCHITECTURE, **info},
                "capabilities": caps, "modified_at": MODIFIED_AT}

    def native(self, method: str, path: str, body: Any) -> tuple[int, dict] | None:
        """Ollama's own API: (status, JSON) for a path it serves, else None."""
        if method == "GET" and path == "/api/tags":
            return 200, {"models": [self._tag(self.model), self._tag(self.embedding_model)]}
        if method == "GET" and path == "/api/version":
            return 200, {"version": "0.12.6"}
        if method == "POST" and path == "/api/show":
            name = (body or {}).get("model") or (body or {}).get("name") if isinstance(body, dict) else None
            shown = self._show(name) if isinstance(name, str) else None
            if shown is None:
                return 404, {"error": f"model '{name}' not found"}
            return 200, shown
        return None
