"""Per server entry, through the fake LLM: the REST behaviour an operator and Letta Code rely on.

The entry's server is shared by every test of the entry: agents get unique names and no
test assumes an empty server.
"""

from __future__ import annotations

import json
import uuid

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pytest_letta_compat import versions
from pytest_letta_compat.rest.agents import agent_configs, assistant_texts, create_agent, send_message

pytestmark = pytest.mark.letta_check("api")

# How each release really behaves, per version range. Checked on live 0.11.3, 0.16.2 and
# 0.16.8 servers and in the sources of 0.11.7, 0.12.1, 0.13.0, 0.16.1 and 0.16.4. A release
# that changes any of these turns its entry red, so the change is noticed here.
EXPECTED: dict[str, dict[str, object]] = {
    # where the run of a message exchange is recorded
    "run_table": {"<0.12": "jobs", ">=0.12": "runs"},
    # GET /v1/agents/{id}/export: the legacy single-agent schema, or the AgentFile (`agents` list)
    "export_format": {"<0.11.7": "legacy", ">=0.11.7": "agent_file"},
    # POST /v1/agents/import answers with the AgentState, or with {"agent_ids": [...]}
    "import_response": {"<0.11.7": "agent_state", ">=0.11.7": "agent_ids"},
    # POST /v1/agents/ with "/" in the name: 422 (validation), later 500 "Export failed: ..."
    "slash_name_create": {"<0.13": 422, ">=0.13": 500},
    # exporting an agent that PATCH gave a "/" name: works with the legacy exporter only
    "slash_name_export": {"<0.11.7": 200, ">=0.11.7": 500},
    # /v1/conversations
    "conversations": {"<0.16.2": False, ">=0.16.2": True},
    # GET /v1/messages/{id}
    "message_by_id": {"<0.16.4": False, ">=0.16.4": True},
}


def expected(behaviour: str, version: str):
    matches = [value for spec, value in EXPECTED[behaviour].items() if Version(version) in SpecifierSet(spec)]
    assert len(matches) == 1, f"EXPECTED[{behaviour!r}] must cover Letta {version} exactly once"
    return matches[0]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_health_answers_without_the_trailing_slash(letta_server):
    """Letta Code and the SDK call /v1/health; no password needed even in secure mode."""
    with letta_server.client(headers={"Authorization": ""}, follow_redirects=True) as anonymous:
        resp = anonymous.get("/v1/health")
    assert resp.status_code == 200
    assert resp.json()["version"] == letta_server.version


def test_agent_list_pages_with_limit_and_after(letta_client, letta_fake_llm):
    mine = {create_agent(letta_client, unique(f"api-page-{i}"), letta_fake_llm.base_url)["id"] for i in range(5)}
    everything = [a["id"] for a in letta_client.get("/v1/agents/", params={"limit": 500}).raise_for_status().json()]
    pages, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = [a["id"] for a in letta_client.get("/v1/agents/", params=params).raise_for_status().json()]
        if not page:
            break
        assert len(page) <= 2
        pages.append(page)
        after = page[-1]
        assert len(pages) <= len(everything), "paging with `after` does not advance"
    paged = [agent for page in pages for agent in page]
    assert len(pages) >= 3
    assert paged == everything, "paging yields other agents, or another order, than one big page"
    assert mine <= set(paged)


def test_message_is_stored_with_sequence_ids_a_run_and_a_step(letta_server, letta_client, letta_db, letta_fake_llm):
    agent = create_agent(letta_client, unique("api-roundtrip"), letta_fake_llm.base_url)
    text = unique("round trip")
    reply = send_message(letta_client, agent["id"], text)
    assert assistant_texts(reply) == [f"fake-llm reply to: {text}"]

    history = letta_client.get(f"/v1/agents/{agent['id']}/messages", params={"limit": 100}).raise_for_status().json()
    assert any(m["message_type"] == "user_message" and text in json.dumps(m.get("content")) for m in history)
    assert f"fake-llm reply to: {text}" in assistant_texts({"messages": history})

    rows = letta_db.execute("SELECT role, sequence_id FROM messages WHERE agent_id = %s ORDER BY created_at, sequence_id",
                            (agent["id"],)).fetchall()
    sequence = [seq for _, seq in rows]
    assert None not in sequence and len(set(sequence)) == len(sequence)
    assert sequence == sorted(sequence), "sequence ids do not follow the order messages were written in"
    assert {"system", "user", "assistant"} <= {role for role, _ in rows}

    (steps,) = letta_db.execute("SELECT count(*) FROM steps WHERE agent_id = %s", (agent["id"],)).fetchone()
    assert steps >= 1
    if expected("run_table", letta_server.version) == "runs":
        query = "SELECT count(*) FROM runs WHERE agent_id = %s AND status = 'completed'"
    else:  # 0.11.x: runs are jobs of type 'run', linked through their steps
        query = ("SELECT count(DISTINCT j.id) FROM jobs j JOIN steps s ON s.job_id = j.id "
                 "WHERE s.agent_id = %s AND j.job_type = 'run' AND j.status = 'completed'")
    (runs,) = letta_db.execute(query, (agent["id"],)).fetchone()
    assert runs >= 1


def test_export_then_import_on_the_same_server(letta_server, letta_client, letta_fake_llm):
    version = letta_server.version
    name, text = unique("api-export"), unique("remember this")
    agent = create_agent(letta_client, name, letta_fake_llm.base_url)
    send_message(letta_client, agent["id"], text)

    exported = letta_client.get(f"/v1/agents/{agent['id']}/export").raise_for_status()
    body = exported.json()
    if expected("export_format", version) == "legacy":
        assert body["name"] == name and body["version"] == version
    else:
        assert [a["name"] for a in body["agents"]] == [name]
        assert body["metadata"]["revision_id"] == versions.server_release(version).alembic_head

    # append_copy_suffix=false keeps the name (the default appends "_copy")
    resp = letta_client.post("/v1/agents/import", files={"file": ("agent.json", exported.content, "application/json")},
                             data={"append_copy_suffix": "false"})
    assert resp.status_code == 200, resp.text
    imported = resp.json()
    if expected("import_response", version) == "agent_state":
        new_id = imported["id"]
    else:
        (new_id,) = imported["agent_ids"]
    assert new_id != agent["id"]
    assert letta_client.get(f"/v1/agents/{new_id}").raise_for_status().json()["name"] == name
    history = letta_client.get(f"/v1/agents/{new_id}/messages", params={"limit": 100}).raise_for_status().json()
    assert any(text in json.dumps(m.get("content")) for m in history if m["message_type"] == "user_message")


def test_slash_in_a_name_is_refused_at_create_but_accepted_by_patch(letta_server, letta_client, letta_fake_llm):
    """The rule that cost the incident an agent: such names get in through PATCH (and 0.11.x
    imports), and newer servers then refuse to export them."""
    version = letta_server.version
    slashed = f"AI/ML Expert {uuid.uuid4().hex[:8]}"
    refused = letta_client.post("/v1/agents/", json={"name": slashed, "memory_blocks": [],
                                                     **agent_configs(letta_fake_llm.base_url)})
    assert refused.status_code == expected("slash_name_create", version), refused.text
    assert "invalid characters" in refused.text

    agent = create_agent(letta_client, unique("api-rename"), letta_fake_llm.base_url)
    renamed = letta_client.patch(f"/v1/agents/{agent['id']}", json={"name": slashed})
    assert renamed.status_code == 200, renamed.text
    assert letta_client.get(f"/v1/agents/{agent['id']}").json()["name"] == slashed

    export = letta_client.get(f"/v1/agents/{agent['id']}/export")
    assert export.status_code == expected("slash_name_export", version), export.text[:500]
    if export.status_code == 500:
        assert export.json()["detail"].startswith("Export failed") and "invalid characters" in export.text


def test_conversations_exist_from_0_16_2(letta_server, letta_client, letta_db, letta_fake_llm):
    agent = create_agent(letta_client, unique("api-conversation"), letta_fake_llm.base_url)
    created = letta_client.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})
    if not expected("conversations", letta_server.version):
        assert created.status_code == 404
        return
    assert created.status_code == 200, created.text
    conversation = created.json()
    assert conversation["agent_id"] == agent["id"]
    listed = letta_client.get("/v1/conversations/", params={"agent_id": agent["id"]}).raise_for_status().json()
    assert [c["id"] for c in listed] == [conversation["id"]]
    assert letta_client.get(f"/v1/conversations/{conversation['id']}").raise_for_status().json()["agent_id"] == agent["id"]

    text = unique("inside a conversation")
    streamed = letta_client.post(f"/v1/conversations/{conversation['id']}/messages",
                                 json={"messages": [{"role": "user", "content": text}]})
    assert streamed.status_code == 200, streamed.text
    events = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    assert f"fake-llm reply to: {text}" in assistant_texts({"messages": events})
    history = letta_client.get(f"/v1/conversations/{conversation['id']}/messages").raise_for_status().json()
    assert f"fake-llm reply to: {text}" in assistant_texts({"messages": history})
    # the column the incident's half-migrated database lacked
    (runs,) = letta_db.execute("SELECT count(*) FROM runs WHERE conversation_id = %s", (conversation["id"],)).fetchone()
    assert runs >= 1


def test_get_message_by_id_only_from_0_16_4(letta_server, letta_client, letta_fake_llm):
    agent = create_agent(letta_client, unique("api-message-id"), letta_fake_llm.base_url)
    reply = send_message(letta_client, agent["id"], unique("find me by id"))
    message_id = next(m["id"] for m in reply["messages"] if m["message_type"] == "assistant_message")
    resp = letta_client.get(f"/v1/messages/{message_id}")
    if expected("message_by_id", letta_server.version):
        assert resp.status_code == 200, resp.text
        found = resp.json()
        assert message_id in {m["id"] for m in (found if isinstance(found, list) else [found])}
    else:
        assert resp.status_code in (404, 405)
