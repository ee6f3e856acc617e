"""The rehearsal's pure parts: recognising dumps, and comparing an agent before and after."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_letta_compat.errors import LettaCompatError
from pytest_letta_compat.operations.inventory import (AgentFacts, Inventory, Secret, compare_agent, compare_server,
                                                      not_checked)
from pytest_letta_compat.operations.rehearse_checks import after_exchange, compare
from pytest_letta_compat.report.rehearsal import PathResult
from pytest_letta_compat.operations.rehearse_source import dump_format, dump_revision, plain_dump_facts


def facts(**overrides) -> AgentFacts:
    base = dict(id="agent-1", name="AI/ML Expert", stored_messages=130,
                messages_by_role={"user": 40, "assistant": 45, "tool": 40, "system": 5},
                blocks={"human": (10, "a"), "persona": (20, "b")}, tools=["roll_dice", "send_message"],
                archival_passages=2, runs=7, steps=9, sources=1, embedding="openai/fake-embedding", env_vars={"TOKEN": Secret.of("s3cret-value")}, via="api")
    base.update(overrides)
    return AgentFacts(**base)


def test_the_same_agent_is_intact():
    assert compare_agent(facts(), facts()) == ("intact", [])


def test_more_messages_after_is_still_intact():
    more = facts(stored_messages=131, messages_by_role={"user": 41, "assistant": 45, "tool": 40, "system": 5})
    assert compare_agent(facts(), more)[0] == "intact"


@pytest.mark.parametrize("after, expected", [
    (dict(name="AI_ML Expert"), "name: 'AI_ML Expert' instead of 'AI/ML Expert'"),
    (dict(stored_messages=50, messages_by_role={"user": 10, "assistant": 45, "tool": 40, "system": 5}),
     "stored_messages: 130 before, 50 after"),
    (dict(blocks={"human": (10, "a")}), "blocks[persona]: missing after (20 characters before)"),
    (dict(blocks={"human": (10, "a"), "persona": (21, "c")}), "blocks[persona]: value differs (20 characters before, 21 after)"),
    (dict(tools=["send_message"]), "tools: 2 before, 1 after (missing ['roll_dice'], extra [])"),
    (dict(archival_passages=0), "archival_passages: 2 before, 0 after"),
    (dict(sources=0), "sources: 1 before, 0 after"),
    (dict(embedding="openai/text-embedding-3-small"),
     "embedding: openai/text-embedding-3-small instead of openai/fake-embedding (archival memory is searched with it)"),
    (dict(pending_approvals=2), "pending_approvals: 0 tool call(s) waiting before, 2 after"),
    (dict(runs=0), "runs: 7 before, 0 after (GET /v1/runs?agent_id= lists only the runs after)"),
    (dict(steps=4), "steps: 9 before, 4 after"),
    (dict(env_vars={"TOKEN": Secret.of("<encrypted>")}),
     "tool_env_vars[TOKEN]: no longer readable (the API returns the placeholder '<encrypted>' instead of the value; "
     "value masked)"),
    (dict(env_vars={"TOKEN": Secret.of("another")}), "tool_env_vars[TOKEN]: the value differs (values masked)"),
])
def test_each_loss_is_named_with_its_numbers(after, expected):
    verdict, diffs = compare_agent(facts(), facts(**after))
    assert verdict == "changed"
    assert expected in diffs


def test_per_role_losses_are_named_even_when_the_total_holds():
    after = facts(messages_by_role={"user": 30, "assistant": 55, "tool": 40, "system": 5})
    assert "messages[user]: 40 before, 30 after" in compare_agent(facts(), after)[1]


def test_missing_and_hidden():
    assert compare_agent(facts(), None)[0] == "lost"
    gone = facts(via="missing")
    assert compare_agent(facts(), gone)[0] == "lost"
    hidden = facts(via="missing", hidden=True)
    assert compare_agent(facts(), hidden)[0] == "hidden"
    unlisted = facts(listed=False, hidden=True)
    assert compare_agent(facts(), unlisted)[0] == "hidden"
    assert "listed: the target's agent list does not include it" in compare_agent(facts(), facts(listed=False))[1]


def test_encrypted_secrets_are_not_checked_never_passed():
    sealed = facts(env_vars={"TOKEN": Secret("not checked")})
    verdict, diffs = compare_agent(sealed, facts(env_vars={"TOKEN": Secret.of("<encrypted>")}))
    assert verdict == "intact" and diffs == []
    assert not_checked(sealed, None) == ["tool_env_vars[TOKEN]: stored encrypted; name the key with "
                                         "--encryption-key-env to check it"]


def test_summaries_never_hold_secrets_or_block_text():
    summary = facts().summary()
    text = repr(summary)
    assert "s3cret-value" not in text and summary["tool_env_vars"] == {"TOKEN": "readable"}
    assert summary["blocks"] == {"human": 10, "persona": 20}


def test_server_level_objects():
    before = {"tools": ["a", "b"], "providers": ["openai"], "blocks": [4]}
    assert compare_server(before, {"tools": ["a", "b", "c"], "providers": ["openai"], "blocks": [5]}) == []
    assert compare_server(before, {"tools": ["a"], "providers": [], "blocks": [3]}) == [
        "blocks: 4 before, 3 after", "providers: 1 missing after ('openai')", "tools: 1 missing after ('b')"]


def test_dump_formats(tmp_path):
    custom = tmp_path / "a.dump"
    custom.write_bytes(b"PGDMP\x01\x0e\x00")
    assert dump_format(custom) == "custom"
    plain = tmp_path / "a.sql"
    plain.write_text("--\n-- PostgreSQL database dump\n--\nCREATE TABLE letta.alembic_version (\n"
                     "    version_num character varying(32) NOT NULL\n);\nALTER TABLE letta.agents OWNER TO ops;\n"
                     "COPY letta.alembic_version (version_num) FROM stdin;\n5fb8bba2c373\n\\.\n")
    assert dump_format(plain) == "plain"
    assert plain_dump_facts(plain) == ("letta", {"ops"})
    assert dump_revision(plain, "plain") == "5fb8bba2c373"
    inserts = tmp_path / "b.sql"
    inserts.write_text("CREATE TABLE public.alembic_version (\n);\n"
                       "INSERT INTO public.alembic_version VALUES ('27de0f58e076');\n")
    assert plain_dump_facts(inserts)[0] == "public" and dump_revision(inserts, "plain") == "27de0f58e076"
    for name, content, message in (("z.gz", b"\x1f\x8b\x08", "gzip-compressed"),
                                   ("n.bin", b"\x00\x01\x02 notes", "is not a PostgreSQL dump")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(LettaCompatError, match=message):
            dump_format(path)
    other = tmp_path / "o.sql"
    other.write_text("CREATE TABLE public.orders (id integer);\n")
    with pytest.raises(LettaCompatError, match="not a dump of a Letta database"):
        plain_dump_facts(other)


def inventory(*agents: AgentFacts, **server) -> Inventory:
    return Inventory(agents={a.id: a for a in agents}, server={"tools": ["roll_dice"], **server}, via="api")


@pytest.mark.parametrize("after, verdict", [
    (inventory(facts(), facts(id="agent-2", name="helper")), "intact"),
    (inventory(facts(), facts(id="agent-2", name="helper", sources=0)), "changed"),
    (inventory(facts(), facts(id="agent-2", name="helper"), tools=[]), "changed"),  # the server's tools only
    (inventory(facts(id="agent-2", name="helper")), "lost"),
    (inventory(facts(name="AI_ML Expert")), "lost"),  # one renamed, one gone: lost wins
])
def test_a_paths_verdict_is_its_worst_agent_or_a_server_difference(after, verdict):
    compared = compare(inventory(facts(), facts(id="agent-2", name="helper")), after)
    assert compared.verdict == verdict
    assert [a["id"] for a in compared.agents] == ["agent-1", "agent-2"]  # every agent of the dump, in order
    assert bool(compared.server_differences) == ("tools" not in after.server or after.server["tools"] == [])


def test_a_path_result_cannot_be_changed_once_made():
    made = PathResult("image", agents=({"id": "agent-1", "verdict": "intact"},))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.verdict = "lost"  # type: ignore[misc]
    assert made.to_json()["agents"] == [{"id": "agent-1", "verdict": "intact"}]
    assert made.to_json()["counts"] == {"intact": 1}


@pytest.mark.parametrize("verdict, oks, expected", [
    ("intact", [True, True], "intact"),
    ("intact", [True, False], "changed"),  # an agent that did not answer and keep its turn
    ("intact", [], "intact"),
    ("lost", [False], "lost"),  # a worse verdict stays
])
def test_a_failed_exchange_turns_an_intact_path_changed(verdict, oks, expected):
    assert after_exchange(verdict, tuple({"ok": ok} for ok in oks)) == expected
