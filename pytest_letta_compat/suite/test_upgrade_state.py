"""What an agent carries across an upgrade besides its name and messages, per [[upgrade]]
entry, each where an operator met it lost (docs/breakages.md): its run history, its archival
memory on its own embedding, and tool calls left waiting for approval when the server stopped."""

from __future__ import annotations

import json

import pytest
from packaging.version import Version

from pytest_letta_compat.operations.backup import backup
from pytest_letta_compat.operations.fixups import RUN_STATUSES
from pytest_letta_compat.operations.inventory import runs_query
from pytest_letta_compat.operations.upgrade import UpgradeRequest, apply_upgrade
from pytest_letta_compat.operations.upgrade_path import ARCHIVAL_TEXT
from pytest_letta_compat.plugin.reporting import NOTE_PROPERTY
from pytest_letta_compat.provision.fake_llm_replies import TOOL_DIRECTIVE
from pytest_letta_compat.provision.procs import free_port
from pytest_letta_compat.rest.agents import agent_configs, create_agent, insert_passage, send_message

pytestmark = pytest.mark.letta_check("upgrade")


def test_run_history_survives_the_upgrade(letta_upgrade_entry, letta_upgrade_path, letta_backend):
    """Every run the seeded agents had on the old release is listed by the new one
    (``GET /v1/runs/?agent_id=``) with its agent and status. Letta 0.12.0's migration
    567e9fe06270 made a new, empty runs table and left the old runs as rows of ``jobs``: on a
    path from 0.11.x the new server lists none of them unless the upgrade copies them back."""
    path, new = letta_upgrade_path, letta_upgrade_entry.to_version
    with letta_backend.connect(path.seeded) as conn:
        before = {run_id: (agent_id, RUN_STATUSES.get(status, status))
                  for agent_id, run_id, status in conn.execute(runs_query(conn))}
    assert before, f"the seeded conversations left no run on {letta_upgrade_entry.from_version}"
    listed = {}
    with path.new_server().client() as client:
        for agent_id in path.agents.values():
            runs = client.get("/v1/runs/", params={"agent_id": agent_id, "limit": 1000}).raise_for_status().json()
            listed.update({run["id"]: (run["agent_id"], run["status"]) for run in runs})
    missing = sorted(set(before) - set(listed))
    assert not missing, f"{len(missing)} of the {len(before)} runs from before the upgrade are not listed by {new}"
    assert {run_id: listed[run_id] for run_id in before} == before


def test_archival_memory_uses_the_agents_own_embedding_after_the_upgrade(letta_upgrade_entry, letta_upgrade_path):
    """An agent whose embedding is not Letta's default (the fake LLM's ``fake-embedding``, at its
    own endpoint) with a passage stored on the old release: on the new one a semantic search
    finds it and a new passage is stored and found. letta#3210: after an upgrade the archival
    path used the default ``openai/text-embedding-3-small`` instead ("Embedding model not found")."""
    path, new = letta_upgrade_path, letta_upgrade_entry.to_version
    agent_id = path.agents["long-history"]  # its passage is stored last, when the path is seeded
    added = f"a passage stored on {new} after the upgrade"
    with path.new_server().client() as client:
        def search(query: str) -> list[str]:  # semantic search; before 0.11.7 the list's search= only
            found = client.get(f"/v1/agents/{agent_id}/archival-memory/search", params={"query": query, "top_k": 10})
            if found.status_code == 404 and "Not Found" in found.text:
                found = client.get(f"/v1/agents/{agent_id}/archival-memory", params={"search": query, "limit": 10})
            assert found.status_code == 200, f"archival search on {new}: {found.status_code} {found.text[:300]}"
            body = found.json()
            return [r["content"] for r in body["results"]] if isinstance(body, dict) else [p["text"] for p in body]

        assert ARCHIVAL_TEXT in search(ARCHIVAL_TEXT)
        insert_passage(client, agent_id, added)
        assert {ARCHIVAL_TEXT, added} <= set(search(added))

        # and the agent's own archival tools, where letta#3210 was seen (attached here: Letta's
        # newer defaults leave them out of an agent without archival memory at creation)
        for name in ("archival_memory_insert", "archival_memory_search"):
            tool = client.get("/v1/tools/", params={"name": name}).raise_for_status().json()
            assert tool, f"{new} has no base tool {name}"
            client.patch(f"/v1/agents/{agent_id}/tools/attach/{tool[0]['id']}").raise_for_status()

        def tool_turn(name: str, arguments: dict) -> str:
            reply = send_message(client, agent_id, f"{TOOL_DIRECTIVE}{json.dumps({'name': name, 'arguments': arguments})}")
            returns = [m for m in reply["messages"] if m.get("message_type") == "tool_return_message"
                       and m.get("name") in (name, None)]
            assert returns, f"{name} on {new}: no tool return in {[m.get('message_type') for m in reply['messages']]}"
            assert returns[0].get("status") == "success", f"{name} on {new}: {str(returns[0].get('tool_return'))[:300]}"
            return str(returns[0].get("tool_return"))

        tool_turn("archival_memory_insert", {"content": f"{added}, by the agent"})
        assert ARCHIVAL_TEXT in tool_turn("archival_memory_search", {"query": ARCHIVAL_TEXT})


APPROVAL_TOOL = '''def launch(target: str) -> str:
    """Launch something; a person approves each launch first.

    Args:
        target (str): What to launch.

    Returns:
        str: What was launched.
    """
    return f"launched {target}"
'''


def test_tool_calls_waiting_for_approval_are_answered_after_the_upgrade(letta_upgrade_entry, letta_backend,
                                                                       letta_server_factory, letta_fake_llm,
                                                                       tmp_path, record_property):
    """An agent stopped while tool calls wait for a person's approval (two in parallel where the
    old release makes them): after the upgrade every new message answers 409 PENDING_APPROVAL
    until they are answered. Approving one and denying the other in one batch must work on the
    new release, and then a new message is answered 200. lettabot#554, #479 and #620: after a
    restart the denial failed with "Invalid tool call IDs" and the agent stayed stuck; Letta
    answers that to a client that answers parallel calls one at a time (noted in the report).
    Its own servers, on its own database, upgraded as ``letta-compat upgrade --apply`` does."""
    old, new = letta_upgrade_entry.from_version, letta_upgrade_entry.to_version
    if Version(old) < Version("0.12.0"):
        pytest.skip(f"Letta {old} has no tool approvals (they start at 0.12.0)")
    parallel = Version(old) >= Version("0.13.0")  # one approval per request before 0.13.0
    database = letta_backend.unique_name("approval", old, new)
    letta_backend.create_database(database, version=old)
    server = letta_server_factory(old, database=database)
    with server.client() as client:
        tool = client.post("/v1/tools/", json={"source_code": APPROVAL_TOOL, "default_requires_approval": True})
        configs = agent_configs(letta_fake_llm.base_url)
        configs["llm_config"]["parallel_tool_calls"] = parallel
        agent = create_agent(client, "waits-for-approval", letta_fake_llm.base_url, agent_type="letta_v1_agent",
                             tool_ids=[tool.raise_for_status().json()["id"]], **configs)["id"]
        calls = [{"name": "launch", "arguments": {"target": t}} for t in (("one", "two") if parallel else ("one",))]
        asked = send_message(client, agent, TOOL_DIRECTIVE + json.dumps(calls))
        request = next(m for m in asked["messages"] if m["message_type"] == "approval_request_message")
        pending = [c["tool_call_id"] for c in (request.get("tool_calls") or [request["tool_call"]])]
        assert len(pending) == len(calls), request
    backup_dir = tmp_path / "backup"
    backup(server.url, backup_dir, dsn=letta_backend.dsn(database), progress=lambda line: None)
    server.stop()
    stopped = f"http://127.0.0.1:{free_port()}"
    apply_upgrade(UpgradeRequest(old, new, letta_backend.dsn(database), stopped, backup_dir, letta_backend.cache),
                  progress=lambda line: None)

    after = letta_server_factory(new, database=database)
    with after.client() as client:
        blocked = client.post(f"/v1/agents/{agent}/messages", json={"messages": [{"role": "user", "content": "hi"}]})
        assert blocked.status_code == 409 and "PENDING_APPROVAL" in blocked.text, blocked.text[:300]
        if len(pending) > 1:  # what lettabot did: answer one call, then the next
            alone = client.post(f"/v1/agents/{agent}/messages", json={"messages": [{"type": "approval", "approvals": [
                {"type": "approval", "tool_call_id": pending[-1], "approve": False, "reason": "one at a time"}]}]})
            if alone.status_code != 200:
                record_property(NOTE_PROPERTY, f"answering 1 of {len(pending)} pending tool calls alone: "
                                f"{alone.status_code} {alone.text[:120]} (lettabot#554): answer them in one batch")
        answers = [{"type": "approval", "tool_call_id": call_id, "approve": i == 0,
                    **({} if i == 0 else {"reason": "not this one"})} for i, call_id in enumerate(pending)]
        body = ({"type": "approval", "approvals": answers} if Version(new) >= Version("0.13.0") else
                {"type": "approval", "approve": True, "approval_request_id": request["id"]})
        answered = client.post(f"/v1/agents/{agent}/messages", json={"messages": [body]})
        assert answered.status_code == 200, f"answering {len(pending)} pending call(s) on {new}: {answered.text[:300]}"
        returns = {r.get("tool_call_id"): r for m in answered.json()["messages"]
                   if m["message_type"] == "tool_return_message" for r in (m.get("tool_returns") or [m])}
        said = json.dumps(answered.json()["messages"])[:3000]
        assert returns.get(pending[0], {}).get("tool_return") == "launched one", said  # approved: it ran
        for denied in pending[1:]:
            assert "denied" in str(returns.get(denied, {}).get("tool_return")), said
        reply = send_message(client, agent, "and now?")
        assert reply["messages"], f"{new} answered the next message with nothing"
    letta_server_factory.stop_soon(after)
