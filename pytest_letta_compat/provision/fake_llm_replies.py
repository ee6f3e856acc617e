"""What the fake LLM answers: pure functions of the request (the messages, the tools offered),
so every reply is reproducible and tests can assert on it. fake_llm.py serves them over the
OpenAI wire protocol."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

REPLY_PREFIX = "fake-llm reply to: "
THOUGHT = "fake-llm thinking: replying to the user."
THOUGHT_KEYS = ("inner_thoughts", "thinking", "thoughts", "reasoning")


def embed(key: str, dim: int) -> list[float]:
    """Unit vector from a sha256 keystream, rounded to float32 so base64 and float agree exactly."""
    raw, block = b"", 0
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(f"{key}#{block}".encode()).digest()
        block += 1
    ints = struct.unpack(f"<{dim}I", raw[: 4 * dim])
    vec = [x / 2**31 - 1.0 for x in ints]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in vec))))


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type":"text","text":...}, ...]
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            text = text_of(m.get("content")).strip()
            if text.startswith("{"):  # Letta wraps user input as {"type":"user_message","message":...}
                try:
                    inner = json.loads(text)
                except ValueError:
                    inner = None
                if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                    return inner["message"].strip()
            return text
    return ""


TOOL_DIRECTIVE = "fake-llm:call-tool "


def scripted_call(messages: list) -> dict | None:
    """A tool call the user's last message asks for: ``fake-llm:call-tool {"name": ..., "arguments": {...}}``
    (answered once: after the tool's result comes back, the reply is text again). A list of such
    objects asks for parallel calls in one reply: the first, with the others under ``"also"``."""
    text = last_user_text(messages)
    at = text.find(TOOL_DIRECTIVE)
    if at < 0:
        return None
    try:
        call, _ = json.JSONDecoder().raw_decode(text[at + len(TOOL_DIRECTIVE):].lstrip())
    except ValueError:
        return None
    calls = call if isinstance(call, list) else [call]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        return None
    return {**calls[0], "also": calls[1:]} if len(calls) > 1 else calls[0]


def last_tool_name(messages: list) -> str | None:
    """Name of the function answered by the final message, if it is a tool/function result."""
    if not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") == "function":
        return last.get("name")
    if last.get("role") != "tool":
        return None
    for m in reversed(messages[:-1]):
        calls = m.get("tool_calls") if isinstance(m, dict) and m.get("role") == "assistant" else None
        for c in calls or []:
            if c.get("id") == last.get("tool_call_id") or not last.get("tool_call_id"):
                return (c.get("function") or {}).get("name")
    return last.get("name")


def default_value(name: str, schema: dict) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for sub in schema.get("anyOf") or schema.get("oneOf") or []:
        if isinstance(sub, dict) and sub.get("type") != "null":
            return default_value(name, sub)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "string":
        return THOUGHT if name in THOUGHT_KEYS else ""
    return {"boolean": False, "integer": 0, "number": 0, "array": [], "object": {}}.get(kind)


def fill_args(params: dict, reply: str) -> dict:
    """Arguments satisfying the JSON schema: `message` gets the reply, the rest plausible defaults."""
    props = params.get("properties") or {}
    wanted = [n for n in props if n in params.get("required", []) or n in ("message", "request_heartbeat")
              or n in THOUGHT_KEYS]
    return {n: reply if n == "message" else default_value(n, props[n] or {}) for n in wanted}


def word_count(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    n = len(text_of(message.get("content")).split())
    for c in message.get("tool_calls") or []:
        n += len(str((c.get("function") or {}).get("arguments", "")).split())
    return n


def split_text(s: str, parts: int = 3) -> list[str]:
    """A few non-empty pieces, so clients really have to reassemble the stream."""
    size = max(1, -(-len(s) // parts))
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]
