"""A server's own environment (start_server(env=...)) reaches a container as the LLM one does:
loopback URLs through a relay on the bridge's gateway, one relay per host port."""

from __future__ import annotations

import json
import urllib.request

from pytest_letta_compat.backends.docker.backend import DockerBackend
from pytest_letta_compat.provision.fake_ollama import FakeOllama


def test_a_loopback_url_is_relayed_and_others_are_kept(monkeypatch):
    backend = object.__new__(DockerBackend)  # no Docker here: only the relaying is under test
    backend._loopback_ports, backend._relays = {}, []
    monkeypatch.setattr(backend, "_gateway", lambda: "127.0.0.1")
    with FakeOllama() as ollama:
        try:
            relayed = backend._relay_loopback(ollama.url + "/v1")
            assert relayed != ollama.url + "/v1" and relayed.endswith("/v1")
            with urllib.request.urlopen(relayed.removesuffix("/v1") + "/api/tags", timeout=10) as resp:
                assert json.load(resp)["models"][0]["name"] == ollama.model
            assert backend._relay_loopback(ollama.url) == relayed.removesuffix("/v1")  # one relay per port
            assert len(backend._relays) == 1
            assert backend._relay_loopback("http://ollama.example:11434") == "http://ollama.example:11434"
            assert backend._relay_loopback("not a url") == "not a url"
        finally:
            for relay in backend._relays:
                relay.stop()
