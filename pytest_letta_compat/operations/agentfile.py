"""Agent files across versions: legacy (0.11.x) → AgentFileSchema, and full histories.

Exports lose history: 0.12+ keeps ~50 messages, 0.11.x drops what precedes the last
``max_steps`` user turns (the boot messages, at least).  The paged history the backup
saves has every stored message, as *typed* messages (one stored message can show up as
reasoning + tool call).  Here the typed messages are grouped back into stored messages;
those the export carries are taken from the export verbatim, the others are rebuilt.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any

from ..errors import LettaCompatError

MARKER = "letta_compat_source_id"  # agent metadata key: which backed-up agent this one is


class AgentFileError(LettaCompatError, ValueError):
    """An agent export or a message history that is not shaped as Letta writes it."""


def _shape_errors(what: str):
    """Whatever shape a file has, a reader of it raises ``AgentFileError`` (one line, no
    values from the file in it), never a KeyError/TypeError from deep inside."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except LettaCompatError:
                raise
            except KeyError as exc:
                raise AgentFileError(f"{what} is not shaped as Letta writes it: the key {exc} is missing.") from None
            except (TypeError, AttributeError, IndexError, ValueError, OverflowError, RecursionError):
                raise AgentFileError(f"{what} is not shaped as Letta writes it: a value has the wrong "
                                     "type or shape.") from None
        return wrapper
    return decorate


def check_history(history: Any, what: str = "the message history") -> list[dict]:
    """A history as the backup saves it: a list of typed messages, each with its stored id."""
    if not isinstance(history, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str)
                                                for m in history):
        raise AgentFileError(f"{what} is not a message history: expected a JSON list of messages, each an "
                             "object with an `id` (history.json of a backup).")
    return history


def _list_of_dicts(value: Any, key: str, what: str, *required: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) and all(r in v for r in required) for v in value):
        need = f" with {', '.join(map(repr, required))}" if required else ""
        raise AgentFileError(f"{what}: `{key}` must be a list of objects{need}.")
    return value

_ROLE_OF_TYPE = {
    "system_message": "system",
    "user_message": "user",
    "tool_return_message": "tool",
    "reasoning_message": "assistant",
    "hidden_reasoning_message": "assistant",
    "assistant_message": "assistant",
    "tool_call_message": "assistant",
    "approval_request_message": "approval",
    "approval_response_message": "approval",
}


# -- the history as stored messages ---------------------------------------------------------
def group_history(history: list[dict]) -> list[list[dict]]:
    """Typed messages grouped by stored message (they share its id), oldest first."""
    groups: dict[str, list[dict]] = {}
    for m in history:
        groups.setdefault(m["id"], []).append(m)
    return list(groups.values())


def role_of(group: list[dict]) -> str:
    kind = group[0].get("message_type")
    return _ROLE_OF_TYPE.get(kind, "other") if isinstance(kind, str) else "other"


def role_counts(history: list[dict]) -> dict[str, int]:
    """Stored messages per role: what every version lists alike when nothing was lost
    (how many typed messages one stored message becomes differs between versions)."""
    check_history(history)
    counts: dict[str, int] = defaultdict(int)
    for group in group_history(history):
        counts[role_of(group)] += 1
    return dict(sorted(counts.items()))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict):
            parts.append(part.get("text") or part.get("reasoning") or "")
    return "".join(parts)


def _tool_calls_of(group: list[dict]) -> list[dict]:
    calls = []
    for m in group:
        if m.get("message_type") not in ("tool_call_message", "approval_request_message"):
            continue
        for call in m.get("tool_calls") or [m.get("tool_call")]:
            if call and call.get("tool_call_id") not in {c["id"] for c in calls}:
                calls.append({"id": call.get("tool_call_id"), "type": "function",
                              "function": {"name": call.get("name"), "arguments": call.get("arguments") or "{}"}})
    return calls


def _signature_of_group(group: list[dict]) -> tuple:
    role = role_of(group)
    if role == "tool":
        return (role, group[0].get("tool_call_id"))
    calls = tuple(c["id"] for c in _tool_calls_of(group))
    if calls:
        return (role, calls)
    text = "".join(m.get("reasoning") or _text(m.get("content")) for m in group)
    return (role, text)


def _signature_of_raw(raw: dict) -> tuple:
    role = raw.get("role")
    if role == "tool":
        return (role, raw.get("tool_call_id"))
    calls = tuple(c.get("id") for c in raw.get("tool_calls") or [])
    if calls:
        return (role, calls)
    return (role, _text(raw.get("content")))


def rebuild_message(group: list[dict]) -> dict:
    """A stored message (AgentFileSchema ``MessageSchema`` fields) from its typed messages."""
    first = group[0]
    role = role_of(group)
    raw: dict[str, Any] = {"role": role, "name": first.get("name"), "created_at": first.get("date"),
                           "content": [], "tool_calls": None, "tool_call_id": None, "tool_returns": None}
    if role in ("system", "user"):
        content = first.get("content")
        raw["content"] = [{"type": "text", "text": content}] if isinstance(content, str) else content
    elif role == "tool":
        ok = first.get("status", "success") == "success"
        packed = json.dumps({"status": "OK" if ok else "Failed", "message": first.get("tool_return"),
                             "time": first.get("date")}, ensure_ascii=False)
        raw.update(content=[{"type": "text", "text": packed}], tool_call_id=first.get("tool_call_id"),
                   tool_returns=[{"tool_call_id": first.get("tool_call_id"), "status": first.get("status", "success"),
                                  "stdout": first.get("stdout"), "stderr": first.get("stderr"),
                                  "func_response": packed}])
    else:
        for m in group:
            kind = m.get("message_type")
            if kind == "reasoning_message" and m.get("source") == "reasoner_model":
                raw["content"].append({"type": "reasoning", "reasoning": m.get("reasoning") or "",
                                       "is_native": True, "signature": m.get("signature")})
            elif kind == "reasoning_message":
                raw["content"].append({"type": "text", "text": m.get("reasoning") or ""})
            elif kind == "assistant_message":
                raw["content"].append({"type": "text", "text": _text(m.get("content"))})
        raw["tool_calls"] = _tool_calls_of(group) or None
        if raw["tool_calls"]:
            raw["tool_call_id"] = raw["tool_calls"][0]["id"]
        if kind == "approval_response_message":
            raw.update(approve=m.get("approve"), approval_request_id=m.get("approval_request_id"),
                       denial_reason=m.get("reason"))
    return raw


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def merge_history(exported: list[dict], history: list[dict]) -> list[tuple[str, dict]]:
    """``(stored id, message)`` for every stored message of ``history``, oldest first: the
    export's own copy where it has one, a rebuilt one otherwise. Timestamps are kept
    strictly increasing (rebuilt ones only have seconds), so every version lists them in order."""
    by_signature: dict[tuple, deque] = defaultdict(deque)
    for raw in exported:
        by_signature[_signature_of_raw(raw)].append(raw)
    merged: list[tuple[str, dict]] = []
    # exports hold the most recent messages: align from the newest backwards
    for group in reversed(group_history(history)):
        candidates = by_signature.get(_signature_of_group(group))
        raw = dict(candidates.pop()) if candidates else rebuild_message(group)
        merged.append((group[0]["id"], raw))
    merged.reverse()
    previous: datetime | None = None
    for _, raw in merged:
        when = _parse_time(raw.get("created_at")) or previous
        if when is not None and previous is not None and when <= previous:
            when = previous + timedelta(microseconds=1)
        if when is not None:
            raw["created_at"] = when.isoformat()
            previous = when
    return merged


def _as_file_message(raw: dict, file_id: str, agent_file_id: str) -> dict:
    keep = ("role", "content", "name", "model", "tool_calls", "tool_call_id", "tool_returns", "created_at",
            "group_id", "approve", "approval_request_id", "denial_reason", "approvals")
    message = {k: raw[k] for k in keep if k in raw}
    for key in ("tool_calls", "tool_returns"):  # 0.11.x writes [] where 0.12+ means None
        if message.get(key) == []:
            message[key] = None
    if message.get("tool_returns"):  # 0.11.x returns lack the call id 0.12+ requires to list them
        message["tool_returns"] = [{"tool_call_id": message.get("tool_call_id"),
                                    "func_response": _text(message.get("content")), **r}
                                   for r in message["tool_returns"]]
        for r in message["tool_returns"]:
            r["tool_call_id"] = r.get("tool_call_id") or message.get("tool_call_id")
    return {**message, "id": file_id, "agent_id": agent_file_id}


def _file_messages(merged: list[tuple[str, dict]], in_context_ids: list[str], agent_file_id: str):
    ids = {stored: f"message-{i}" for i, (stored, _) in enumerate(merged)}
    messages = [_as_file_message(raw, ids[stored], agent_file_id) for stored, raw in merged]
    return messages, [ids[m] for m in in_context_ids if m in ids]


# -- legacy (0.11.x) → AgentFileSchema ------------------------------------------------------
def _legacy_messages(legacy: dict, full_history: list[dict] | None,
                     in_context_ids: list[str] | None) -> tuple[list[tuple[str, dict]], list[str]]:
    exported = legacy.get("messages") or []
    if not full_history:
        merged = [(f"exported-{i}", raw) for i, raw in enumerate(exported)]
        indices = legacy.get("in_context_message_indices") or []
        return merged, [merged[i][0] for i in indices if i < len(merged)]
    merged = merge_history(exported, full_history)
    if in_context_ids is None:  # without the agent's own list: everything the export called in-context
        in_context_ids = [stored for stored, _ in merged]
    return merged, in_context_ids


def check_legacy(legacy: Any, what: str = "the agent export") -> dict:
    """A 0.11.x ``AgentSchema`` export, its parts of the types conversion reads."""
    if not isinstance(legacy, dict) or "agents" in legacy or "core_memory" not in legacy:
        raise AgentFileError(f"{what} is not a legacy (0.11.x) agent export: it has no 'core_memory' (an "
                             "AgentFileSchema has 'agents' and needs no conversion).")
    if not isinstance(legacy.get("name"), str):
        raise AgentFileError(f"{what}: `name` must be the agent's name (a string).")
    _list_of_dicts(legacy.get("core_memory"), "core_memory", what, "label", "value")
    _list_of_dicts(legacy.get("tools"), "tools", what, "name")
    _list_of_dicts(legacy.get("tags"), "tags", what, "tag")
    _list_of_dicts(legacy.get("messages"), "messages", what)
    _list_of_dicts(legacy.get("tool_exec_environment_variables"), "tool_exec_environment_variables", what, "key")
    indices = legacy.get("in_context_message_indices") or []
    if not isinstance(indices, list) or not all(type(i) is int and i >= 0 for i in indices):
        raise AgentFileError(f"{what}: `in_context_message_indices` must be a list of message positions.")
    return legacy


def _check_in_context(ids: Any) -> None:
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise AgentFileError("the in-context message ids must be a list of message ids.")


@_shape_errors("the agent export")
def convert_legacy(legacy: dict, full_history: list[dict] | None = None, *,
                   in_context_ids: list[str] | None = None) -> dict:
    """A 0.11.x ``AgentSchema`` export as the ``AgentFileSchema`` 0.12+ imports.

    ``full_history`` (the paged typed messages) replaces the export's truncated messages;
    ``in_context_ids`` (the agent's ``message_ids``) then says which are in context.
    Any other input: ``AgentFileError``."""
    check_legacy(legacy)
    if full_history is not None:
        check_history(full_history)
    _check_in_context(in_context_ids)
    merged, context = _legacy_messages(legacy, full_history, in_context_ids)
    messages, in_context = _file_messages(merged, context, "agent-0")
    tools = [{
        "id": f"tool-{i}", "name": t["name"], "description": t.get("description"),
        "source_code": t.get("source_code"), "source_type": t.get("source_type") or "python",
        "json_schema": t.get("json_schema"), "args_json_schema": t.get("args_json_schema"),
        "return_char_limit": t.get("return_char_limit") or 6000, "tags": t.get("tags") or [],
        "tool_type": t.get("tool_type") or "custom", "metadata_": t.get("metadata_") or {},
    } for i, t in enumerate(legacy.get("tools") or [])]
    blocks = [{
        "id": f"block-{i}", "label": b["label"], "value": b["value"], "limit": b.get("limit") or 5000,
        "description": b.get("description"), "metadata": b.get("metadata_") or {},
        "is_template": bool(b.get("is_template")), "template_name": b.get("template_name"),
    } for i, b in enumerate(legacy.get("core_memory") or [])]
    agent = {
        "id": "agent-0", "name": legacy["name"], "system": legacy.get("system"),
        "agent_type": legacy.get("agent_type"), "description": legacy.get("description"),
        "llm_config": legacy.get("llm_config"), "embedding_config": legacy.get("embedding_config"),
        "metadata": legacy.get("metadata_") or {}, "tags": [t["tag"] for t in legacy.get("tags") or []],
        "tool_rules": legacy.get("tool_rules") or [], "tool_ids": [t["id"] for t in tools],
        "block_ids": [b["id"] for b in blocks], "source_ids": [],
        "message_buffer_autoclear": bool(legacy.get("message_buffer_autoclear")),
        # secrets are exported with their values: keep the keys, as 0.12+ exports do
        "tool_exec_environment_variables": {v["key"]: "" for v in legacy.get("tool_exec_environment_variables") or []},
        "include_base_tools": False, "include_multi_agent_tools": False, "include_base_tool_rules": False,
        "include_default_source": False,
        "in_context_message_ids": in_context, "messages": messages, "files_agents": [], "group_ids": [],
    }
    return {"agents": [agent], "groups": [], "blocks": blocks, "files": [], "sources": [], "tools": tools,
            "mcp_servers": [], "metadata": {"converted_from": f"letta {legacy.get('version', '0.11')} legacy export"}}


@_shape_errors("the agent file")
def with_full_history(agent_file: dict, full_history: list[dict], in_context_ids: list[str]) -> dict:
    """An AgentFileSchema export (one agent) with its whole history instead of the last ~50."""
    if not is_agent_file(agent_file):
        raise AgentFileError("the agent file is not an AgentFileSchema export: it needs `agents`, a list "
                             "holding the agent.")
    check_history(full_history)
    _check_in_context(in_context_ids)
    result = json.loads(json.dumps(agent_file))
    agent = result["agents"][0]
    merged = merge_history(agent.get("messages") or [], full_history)
    agent["messages"], agent["in_context_message_ids"] = _file_messages(merged, in_context_ids, agent["id"])
    return result


@_shape_errors("the agent export")
def legacy_with_full_history(legacy: dict, full_history: list[dict], in_context_ids: list[str]) -> dict:
    """A legacy export with its whole history, for importing into a 0.11.x server."""
    check_legacy(legacy)
    check_history(full_history)
    _check_in_context(in_context_ids)
    result = json.loads(json.dumps(legacy))
    merged = merge_history(legacy.get("messages") or [], full_history)
    position = {stored: i for i, (stored, _) in enumerate(merged)}
    result["messages"] = [{
        "created_at": raw.get("created_at"), "updated_at": raw.get("updated_at") or raw.get("created_at"),
        "group_id": raw.get("group_id"), "model": raw.get("model"), "name": raw.get("name"),
        "role": raw["role"], "content": raw.get("content") or [], "tool_call_id": raw.get("tool_call_id"),
        "tool_calls": raw.get("tool_calls") or [],
        "tool_returns": [{k: r.get(k) for k in ("status", "stdout", "stderr")} for r in raw.get("tool_returns") or []],
    } for _, raw in merged]
    result["in_context_message_indices"] = [position[m] for m in in_context_ids if m in position]
    return result


def is_legacy(export: dict) -> bool:
    return isinstance(export, dict) and "agents" not in export and "core_memory" in export


def is_agent_file(export: Any) -> bool:
    """An AgentFileSchema export (0.12+): ``agents``, a list whose first item is the agent."""
    agents = export.get("agents") if isinstance(export, dict) else None
    return isinstance(agents, list) and bool(agents) and isinstance(agents[0], dict)


def agent_of(export: dict) -> dict:
    """The agent part of either format (name, system, metadata live there)."""
    if is_legacy(export):
        return export
    if not is_agent_file(export):
        raise AgentFileError("not an agent export: neither a legacy one (`core_memory`) nor an agent file "
                             "(`agents`).")
    return export["agents"][0]
