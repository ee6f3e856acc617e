"""Letta's known 60 s stall around the first archival insert (docs/internals.md): a seeding step
sends the insert once more, with a warning, only when the stall answered and nothing was stored;
any other failure still fails."""

from __future__ import annotations

import httpx
import pytest

from pytest_letta_compat.rest import agents
from pytest_letta_compat.rest.agents import LettaKnownStall, insert_passage


def letta(posts: list[int], stored: list[dict]):
    """A Letta stand-in: each POST answers the next status in ``posts``; GET lists ``stored``."""
    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json=stored)
        return httpx.Response(posts.pop(0), json={})

    return httpx.Client(base_url="http://letta", transport=httpx.MockTransport(handle)), seen


def test_a_fast_500_is_a_real_failure(monkeypatch):
    client, seen = letta([500], [])
    with pytest.raises(httpx.HTTPStatusError):
        insert_passage(client, "agent-1", "a passage")
    assert seen == ["POST"]


def test_the_stall_is_sent_once_more_with_a_warning(monkeypatch):
    monkeypatch.setattr(agents, "KNOWN_STALL_S", 0.0)
    client, seen = letta([500, 200], [])
    with pytest.warns(LettaKnownStall, match="known stall"):
        insert_passage(client, "agent-1", "a passage")
    assert seen == ["POST", "GET", "POST"]


def test_the_stall_after_the_passage_was_stored_is_not_sent_twice(monkeypatch):
    monkeypatch.setattr(agents, "KNOWN_STALL_S", 0.0)
    client, seen = letta([500], [{"id": "passage-1", "text": "a passage"}])
    insert_passage(client, "agent-1", "a passage")
    assert seen == ["POST", "GET"]


def test_a_second_stall_fails(monkeypatch):
    monkeypatch.setattr(agents, "KNOWN_STALL_S", 0.0)
    client, _ = letta([500, 500], [])
    with pytest.warns(LettaKnownStall), pytest.raises(httpx.HTTPStatusError):
        insert_passage(client, "agent-1", "a passage")
