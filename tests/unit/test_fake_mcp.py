"""The fake MCP server at the fake LLM's ``/mcp``: MCP's Streamable HTTP transport as the `mcp`
SDK's client (inside every Letta release) speaks it. The real client is exercised by the suite's
``test_mcp_servers_list_their_tools_after_the_upgrade`` against real Letta servers; here, the
wire shapes it depends on, over raw HTTP."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_letta_compat.provision import fake_mcp
from pytest_letta_compat.provision.fake_llm import FakeLLM


@pytest.fixture(scope="module")
def mcp():
    with FakeLLM() as fake, httpx.Client(base_url=fake.url + fake_mcp.PATH) as client:
        yield client


def rpc(client: httpx.Client, rid: int, method: str, **params) -> dict:
    resp = client.post("", json={"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                       headers={"Accept": "application/json, text/event-stream"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == rid
    return body


def test_a_session_initializes_lists_and_calls_tools(mcp):
    init = rpc(mcp, 1, "initialize", protocolVersion="2025-03-26", capabilities={},
               clientInfo={"name": "mcp", "version": "1"})["result"]
    assert init["protocolVersion"] == "2025-03-26"  # the client's, when the server speaks it
    assert "tools" in init["capabilities"] and init["serverInfo"]["name"] == "fake-mcp"
    notified = mcp.post("", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (notified.status_code, notified.content) == (202, b"")
    tools = rpc(mcp, 2, "tools/list")["result"]["tools"]
    assert [t["name"] for t in tools] == list(fake_mcp.TOOL_NAMES)
    assert all(t["inputSchema"]["type"] == "object" for t in tools)
    called = rpc(mcp, 3, "tools/call", name="lookup_order", arguments={"order": "A-7"})["result"]
    assert called == {"content": [{"type": "text", "text": "order A-7: shipped"}], "isError": False}


def test_an_unknown_protocol_version_gets_the_newest_one(mcp):
    assert rpc(mcp, 1, "initialize", protocolVersion="1999-01-01")["result"]["protocolVersion"] == \
        fake_mcp.PROTOCOL_VERSIONS[0]


def test_errors_are_json_rpc_errors(mcp):
    assert rpc(mcp, 4, "tools/call", name="nope", arguments={})["error"]["code"] == -32602
    assert rpc(mcp, 5, "resources/list")["error"]["code"] == -32601


def test_no_server_to_client_stream_and_no_session_to_end(mcp):
    for method in ("GET", "DELETE"):  # the client takes 405 as "not offered"
        assert mcp.request(method, "").status_code == 405


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=10)
MESSAGES = JSON | st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": st.sampled_from(["initialize", "ping", "tools/list", "tools/call", "x"])},
    optional={"id": JSON, "params": JSON | st.fixed_dictionaries(
        {}, optional={"name": st.sampled_from([*fake_mcp.TOOL_NAMES, "x"]) | JSON, "arguments": JSON,
                      "protocolVersion": JSON})})


@given(MESSAGES)
def test_any_json_gets_an_answer_or_none_never_an_exception(message):
    reply = fake_mcp.answer(message)
    assert reply is None or (reply["jsonrpc"] == "2.0" and ("result" in reply or "error" in reply))
