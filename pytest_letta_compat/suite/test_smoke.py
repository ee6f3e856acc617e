"""Per matrix entry: the server is healthy, at the right version and schema, and agents talk."""

from __future__ import annotations

import pytest

from pytest_letta_compat import versions
from pytest_letta_compat.rest.agents import assistant_texts, create_agent, send_message

pytestmark = pytest.mark.letta_check("smoke")


def test_health_reports_the_matrix_version(letta_server_entry, letta_client):
    resp = letta_client.get("/v1/health/")
    assert resp.status_code == 200
    assert resp.json() == {"version": letta_server_entry.version, "status": "ok"}


def test_database_is_at_the_versions_alembic_head(letta_server, letta_db):
    (revision,) = letta_db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == versions.server_release(letta_server.version).alembic_head


def test_tables_live_in_the_letta_schema_with_pgvector(letta_db):
    schemas = {row[0] for row in letta_db.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name IN ('agents', 'messages')")}
    assert schemas == {"letta"}
    (ext_schema,) = letta_db.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'").fetchone()
    assert ext_schema == "letta"


def test_secure_mode_rejects_requests_without_the_password(letta_server_entry, letta_server):
    if not letta_server_entry.secure:
        pytest.skip("this matrix entry runs without a password")
    with letta_server.client(headers={"Authorization": "Bearer wrong"}) as anonymous:
        assert anonymous.get("/v1/agents/").status_code == 401
        assert anonymous.get("/v1/health/").status_code == 200  # health stays open


def test_fake_llm_is_listed_as_openai_proxy_model(letta_client, letta_fake_llm):
    handles = {m.get("handle") for m in letta_client.get("/v1/models/").raise_for_status().json()}
    assert f"openai-proxy/{letta_fake_llm.model}" in handles


def test_agent_exchanges_a_message_through_the_fake_llm(letta_client, letta_db, letta_fake_llm):
    agent = create_agent(letta_client, "smoke-agent", letta_fake_llm.base_url)
    reply = send_message(letta_client, agent["id"], "ping from the smoke test")
    assert assistant_texts(reply) == ["fake-llm reply to: ping from the smoke test"]
    (count,) = letta_db.execute(
        "SELECT count(*) FROM messages WHERE agent_id = %s AND sequence_id IS NOT NULL", (agent["id"],)).fetchone()
    assert count >= 3  # system, user, assistant at least


def test_in_place_upgrade_keeps_agents_and_their_history(letta_upgrade_entry, letta_upgrade_path):
    """The path the incident should have taken: migrate the old database, then start the new server."""
    path, new = letta_upgrade_path, letta_upgrade_entry.to_version
    agent_id = path.agents["AI/ML Expert"]
    after = path.new_server()  # on a copy of the upgraded database: this test may add to it
    with after.client() as client:
        assert client.get("/v1/health/").json()["version"] == new
        survivor = client.get(f"/v1/agents/{agent_id}").raise_for_status().json()
        assert survivor["name"] == "AI/ML Expert"
        messages = client.get(f"/v1/agents/{agent_id}/messages", params={"limit": 100}).raise_for_status().json()
        assert set(path.history["AI/ML Expert"]) <= {m["id"] for m in messages}
        reply = send_message(client, agent_id, "still there?")
        assert assistant_texts(reply) == ["fake-llm reply to: still there?"]
