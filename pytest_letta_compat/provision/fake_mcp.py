"""A deterministic MCP server's answers (stdlib only), served by the fake LLM at ``/mcp``.

It speaks MCP's Streamable HTTP transport as the official ``mcp`` SDK's client expects it: each
JSON-RPC request POSTed to the endpoint gets one ``application/json`` answer, a notification
gets 202 with no body, and ``GET`` (the optional server-to-client stream) gets 405, which the
client takes as "no stream". Served from the fake LLM's own port, so a Letta server in a
container reaches it through the same relay as the model (``backends/docker``).

The tools are a pure function of their arguments, so tests can assert on what an agent's MCP
tool returned.
"""

from __future__ import annotations

from typing import Any

PATH = "/mcp"
SERVER_INFO = {"name": "fake-mcp", "version": "1.0"}
PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")

TOOLS: tuple[dict, ...] = (
    {"name": "lookup_order",
     "description": "Look up an order by its number and return its status.",
     "inputSchema": {"type": "object", "properties": {"order": {"type": "string", "description": "The order number."}},
                     "required": ["order"]}},
    {"name": "count_letters",
     "description": "Count the letters of a word.",
     "inputSchema": {"type": "object", "properties": {"word": {"type": "string", "description": "The word."}},
                     "required": ["word"]}},
)
TOOL_NAMES = tuple(t["name"] for t in TOOLS)


def call_tool(name: str, arguments: dict) -> str:
    """What ``name`` returns for ``arguments``."""
    if name == "lookup_order":
        return f"order {arguments.get('order', '')}: shipped"
    if name == "count_letters":
        word = str(arguments.get("word", ""))
        return f"{word} has {sum(c.isalpha() for c in word)} letters"
    raise KeyError(name)


def _result(rid: Any, result: dict) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def answer(message: Any) -> dict | None:
    """The JSON-RPC answer to one POSTed message; None for a notification (no ``id``)."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "method" not in message:
        return _error(message.get("id") if isinstance(message, dict) else None, -32600, "Invalid Request")
    if "id" not in message:
        return None
    rid, method, params = message["id"], message["method"], message.get("params") or {}
    if not isinstance(params, dict):
        return _error(rid, -32602, "params must be an object")
    if method == "initialize":
        asked = params.get("protocolVersion")
        return _result(rid, {"protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
                             "capabilities": {"tools": {"listChanged": False}}, "serverInfo": SERVER_INFO})
    if method == "ping":
        return _result(rid, {})
    if method == "tools/list":
        return _result(rid, {"tools": list(TOOLS)})
    if method == "tools/call":
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            return _error(rid, -32602, "arguments must be an object")
        try:
            text = call_tool(params.get("name", ""), arguments)
        except KeyError:
            return _error(rid, -32602, f"Unknown tool: {params.get('name')!r}")
        return _result(rid, {"content": [{"type": "text", "text": text}], "isError": False})
    return _error(rid, -32601, f"Method not found: {method}")
