"""The file layout of Letta Code's local backend (``letta --backend local``), as written by
the releases listed in ``data/local_backend_proven.json``.

Learnt from Letta Code's source (``src/backend/local/``: local-store.ts, local-message.ts,
system-prompt-compilation.ts) and from what 0.32.18 and 0.34.12 write when they create an
agent; nothing here imports or copies Letta Code::

    agents/<base64url(agent id)>.json                     the agent record
    conversations/<base64url("default:" + agent id)>/
        conversation.json                                 ids, timestamps, in_context_message_ids
        manifest.json                                     schema_version 2, pi-session-entry-jsonl
        messages.jsonl                                    session header, then one entry per message
    memfs/<agent id>/memory/                              a git repository; only COMMITTED files count
        system/<label>.md                                 "---\\ndescription: ...\\n---\\n<value>"

Local agent ids must start with ``agent-local-`` (Letta Code routes any other id to a
server), so a server id ``agent-<uuid>`` becomes ``agent-local-<uuid>``; message ids are kept.
Pure functions over the server's JSON, plus :func:`write_agent`; no pytest, no network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import LettaCompatError
from ..paths import write_text_atomic

TRANSCRIPT_MANIFEST = {"schema_version": 2, "message_format": "pi-session-entry-jsonl", "provider_stack": "pi-ai"}
DEFAULT_CONVERSATION = "default"
SEND_MESSAGE = "send_message"
_LABEL_UNSAFE = re.compile(r"[^\w.-]+", re.UNICODE)

# V1 llm_config.model_endpoint_type -> Letta Code provider prefix of a local model handle
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "google_ai": "google", "google_vertex": "google-vertex",
              "ollama": "ollama", "lmstudio": "lmstudio", "lmstudio_openai": "lmstudio", "groq": "groq",
              "openrouter": "openrouter", "deepseek": "deepseek", "xai": "xai", "mistral": "mistral",
              "together": "openai-compatible", "vllm": "openai-compatible", "azure": "azure", "bedrock": "bedrock"}


def segment(value: str) -> str:
    """Node's ``Buffer.from(value).toString("base64url")``: no padding."""
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def local_agent_id(server_id: str) -> str:
    if server_id.startswith("agent-local-"):
        return server_id
    return "agent-local-" + (server_id[len("agent-"):] if server_id.startswith("agent-") else server_id)


def agent_record_path(storage: Path, agent_id: str) -> Path:
    return Path(storage) / "agents" / f"{segment(agent_id)}.json"


def conversation_dir(storage: Path, agent_id: str) -> Path:
    return Path(storage) / "conversations" / segment(f"{DEFAULT_CONVERSATION}:{agent_id}")


def memory_dir(storage: Path, agent_id: str) -> Path:
    return Path(storage) / "memfs" / agent_id / "memory"


def list_agent_records(storage: Path) -> dict[str, dict]:
    """{agent id: record} of every agent file in ``storage`` (unreadable files skipped)."""
    out: dict[str, dict] = {}
    for path in sorted((Path(storage) / "agents").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            out[record["id"]] = record
    return out


# -- model ----------------------------------------------------------------------------------
def map_model(llm_config: dict | None, override: str | None) -> tuple[str, str]:
    """(local model handle, how it was chosen) for an agent's V1 ``llm_config``."""
    if override:
        return override, "from --model"
    cfg = llm_config or {}
    model, kind = str(cfg.get("model") or ""), str(cfg.get("model_endpoint_type") or "")
    endpoint = str(cfg.get("model_endpoint") or "")
    if not model:
        return "local/default", "the server had no model; Letta Code's default (choose one with --model)"
    provider = _PROVIDERS.get(kind, "openai-compatible")
    if provider == "openai" and endpoint and "api.openai.com" not in endpoint:
        provider = "openai-compatible"  # a self-hosted OpenAI-wire endpoint
    why = f"mapped from llm_config (endpoint type {kind or '?'}"
    why += f", endpoint {endpoint})" if endpoint else ")"
    if provider == "openai-compatible":
        why += f"; connect it first: letta --backend local connect openai-compatible --base-url {endpoint or 'URL'}"
    return f"{provider}/{model}", why


def model_settings(llm_config: dict | None) -> dict[str, Any]:
    cfg, out = llm_config or {}, {}
    if isinstance(cfg.get("context_window"), int):
        out["context_window_limit"] = cfg["context_window"]
    if isinstance(cfg.get("max_tokens"), int):
        out["max_tokens"] = cfg["max_tokens"]
    if isinstance(cfg.get("parallel_tool_calls"), bool):
        out["parallel_tool_calls"] = cfg["parallel_tool_calls"]
    return out


def agent_record(state: dict, agent_id: str, model: str) -> dict:
    return {"id": agent_id, "name": state["name"], "description": state.get("description"),
            "system": state.get("system") or "", "tags": list(state.get("tags") or []),
            "model": model, "model_settings": model_settings(state.get("llm_config"))}


# -- memory ---------------------------------------------------------------------------------
def memory_path(label: str) -> str:
    """``system/<label>.md``; a label that is no safe file name is made one."""
    safe = _LABEL_UNSAFE.sub("_", label).strip("._") or "block"
    return f"system/{safe}.md"


def memory_file(block: dict) -> str:
    """A block as Letta Code's memfs file: one-line frontmatter keys, then the value verbatim."""
    lines = ["---"]
    description = " ".join(str(block.get("description") or "").split())
    if description:
        lines.append(f"description: {description}")
    if isinstance(block.get("limit"), int):
        lines.append(f"limit: {block['limit']}")
    if block.get("read_only") is True:
        lines.append("read_only: true")
    lines.append("---")
    return "\n".join(lines) + "\n" + str(block.get("value") or "")


def memory_files(blocks: list[dict]) -> dict[str, str]:
    files: dict[str, str] = {}
    for block in blocks:
        path = memory_path(str(block.get("label") or "block"))
        stem, n = path[:-3], 2
        while path in files:  # two labels that sanitise alike
            path, n = f"{stem}-{n}.md", n + 1
        files[path] = memory_file(block)
    return files


# -- history --------------------------------------------------------------------------------
def epoch_ms(date: str | None) -> int:
    if not date:
        return 0
    try:
        parsed = datetime.fromisoformat(date.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def _arguments(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        return {"input": raw}
    return parsed if isinstance(parsed, dict) else {"input": parsed}


def _calls(m: dict) -> list[dict]:
    calls = m.get("tool_calls")
    if isinstance(calls, list) and calls:
        return [c for c in calls if isinstance(c, dict)]
    return [m["tool_call"]] if isinstance(m.get("tool_call"), dict) else []


def _returns(m: dict) -> list[dict]:
    returns = m.get("tool_returns")
    if isinstance(returns, list) and returns:
        return [r for r in returns if isinstance(r, dict)]
    return [{"tool_call_id": m.get("tool_call_id"), "status": m.get("status"),
             "tool_return": m.get("tool_return")}]


@dataclass
class ConvertedHistory:
    messages: list[dict]
    in_context_ids: list[str]
    tool_calls: int = 0
    tool_results: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> messages not carried

    def describe_dropped(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))


def convert_history(history: list[dict], state: dict, agent_id: str, model: str) -> ConvertedHistory:
    """The server's typed messages (oldest first) as Letta Code local messages.

    One server message id becomes one local message with the same id: reasoning, text and
    tool calls of one assistant step are the parts of one assistant message; every tool
    return is a ``toolResult``. ``send_message`` calls become the assistant's text (Letta
    Code has no such tool) and their returns are not carried. System messages holding the
    system prompt are not carried (Letta Code compiles its own from the agent record and
    memfs); any other system message becomes a ``<system-reminder>`` user message."""
    provider, _, model_name = model.partition("/")
    system_head = (state.get("system") or "").strip()[:200]
    groups: dict[str, list[dict]] = {}
    for m in history:
        groups.setdefault(str(m.get("id")), []).append(m)

    out = ConvertedHistory([], [])
    names: dict[str, str] = {}  # tool call id -> tool name
    skipped_returns: set[str] = set()
    expanded: dict[str, list[str]] = {}  # server message id -> local ids, when one became several
    answered: set[str] = set()
    for m in history:
        if m.get("message_type") == "tool_return_message":
            answered.update(str(r.get("tool_call_id")) for r in _returns(m))

    def base(mid: str, parts: list[dict]) -> dict:
        ms = epoch_ms(parts[0].get("date"))
        return {"id": mid, "timestamp": ms,
                "metadata": {"created_at": _iso(ms), "updated_at": _iso(ms), "agent_id": agent_id,
                             "conversation_id": DEFAULT_CONVERSATION}}

    for mid, parts in groups.items():
        kinds = {p.get("message_type") for p in parts}
        if kinds == {"system_message"}:
            text = _text(parts[0].get("content"))
            if not text.strip() or (system_head and text.strip().startswith(system_head)) or not out.messages:
                out.dropped["system-prompt messages (Letta Code compiles its own)"] += 1
                continue
            out.messages.append({**base(mid, parts), "role": "user",
                                 "content": [{"type": "text", "text": f"<system-reminder>\n{text}\n</system-reminder>"}]})
        elif kinds == {"user_message"}:
            text = "\n".join(_text(p.get("content")) for p in parts)
            out.messages.append({**base(mid, parts), "role": "user", "otid": parts[0].get("otid") or mid,
                                 "content": [{"type": "text", "text": text}]})
        elif kinds == {"tool_return_message"}:
            for p in parts:
                for r in _returns(p):
                    call_id = str(r.get("tool_call_id"))
                    if call_id in skipped_returns:
                        out.dropped["send_message results (the message itself is the assistant's text)"] += 1
                        continue
                    if call_id not in names:
                        out.dropped["tool results without their call"] += 1
                        continue
                    result_id = mid if len(parts) == 1 and len(_returns(p)) == 1 else f"{mid}-{call_id}"
                    if result_id != mid:
                        expanded.setdefault(mid, []).append(result_id)
                    value = r.get("tool_return", r.get("func_response"))
                    out.messages.append({**base(result_id, [p]), "role": "toolResult", "toolCallId": call_id,
                                         "toolName": names[call_id],
                                         "content": [{"type": "text", "text": _text(value)}],
                                         "isError": r.get("status") == "error"})
                    out.tool_results += 1
        elif kinds <= {"reasoning_message", "hidden_reasoning_message", "assistant_message", "tool_call_message"}:
            content: list[dict] = []
            for p in parts:
                kind = p.get("message_type")
                if kind == "reasoning_message" and (p.get("reasoning") or "").strip():
                    content.append({"type": "thinking", "thinking": p["reasoning"]})
                elif kind == "assistant_message" and _text(p.get("content")).strip():
                    content.append({"type": "text", "text": _text(p.get("content"))})
                elif kind == "tool_call_message":
                    for call in _calls(p):
                        call_id, name = str(call.get("tool_call_id") or call.get("id")), str(call.get("name"))
                        args = _arguments(call.get("arguments"))
                        if name == SEND_MESSAGE:
                            skipped_returns.add(call_id)
                            content.append({"type": "text", "text": str(args.get("message", ""))})
                        elif call_id not in answered:
                            out.dropped["tool calls the server never answered"] += 1
                        else:
                            names[call_id] = name
                            content.append({"type": "toolCall", "id": call_id, "name": name, "arguments": args})
                            out.tool_calls += 1
            if not any(c["type"] in ("text", "toolCall") for c in content):
                out.dropped["assistant steps with no text or tool call"] += 1
                continue
            has_calls = any(c["type"] == "toolCall" for c in content)
            out.messages.append({**base(mid, parts), "role": "assistant", "content": content,
                                 "api": "openai-completions", "provider": provider, "model": model_name,
                                 "usage": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
                                           "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0,
                                                    "total": 0}},
                                 "stopReason": "toolUse" if has_calls else "stop"})
        else:
            out.dropped[f"{'/'.join(sorted(str(k) for k in kinds))} messages"] += 1

    written = {m["id"] for m in out.messages}
    ids: list[str] = []
    for mid in (str(i) for i in state.get("message_ids") or []):
        ids.extend(i for i in expanded.get(mid, [mid]) if i in written)
    out.in_context_ids = ids
    return out


# -- writing --------------------------------------------------------------------------------
def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
    git = shutil.which("git")
    if git is None:
        raise LettaCompatError("Letta Code keeps memory in git repositories, but no `git` is on PATH: install git.")
    proc = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LettaCompatError(f"git {args[0]} in {cwd} failed: {(proc.stderr or proc.stdout).strip()[:300]}")


def commit_memory(directory: Path, agent_id: str, files: dict[str, str], when_ms: int) -> None:
    """A new git repository holding ``files``, committed (Letta Code reads only HEAD)."""
    directory.mkdir(parents=True)
    _git(directory, "init", "--quiet", "--initial-branch=main")
    for key, value in (("letta.agentId", agent_id), ("user.name", "letta-compat move-to-local"),
                       ("user.email", f"{agent_id}@letta.com"), ("commit.gpgsign", "false")):
        _git(directory, "config", "--local", key, value)
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _git(directory, "add", "--all")
    stamp = f"{max(when_ms, 0) // 1000} +0000"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    _git(directory, "commit", "--quiet", "--allow-empty", "--no-verify", "-m",
         "chore: memory blocks moved from a Letta server by letta-compat", env=env)


def _entry_id(agent_id: str, message_id: str) -> str:
    return hashlib.sha256(f"{agent_id}\0{message_id}".encode()).hexdigest()[:8]


def transcript_lines(agent_id: str, messages: list[dict], created_at: str, cwd: str) -> list[str]:
    lines = [json.dumps({"type": "session", "version": 3, "id": DEFAULT_CONVERSATION, "timestamp": created_at,
                         "cwd": cwd}, ensure_ascii=False)]
    parent = None
    for message in messages:
        entry_id = _entry_id(agent_id, message["id"])
        lines.append(json.dumps({"type": "message", "id": entry_id, "parentId": parent,
                                 "timestamp": message["metadata"]["created_at"], "message": message},
                                ensure_ascii=False))
        parent = entry_id
    return lines


def write_agent(storage: Path, record: dict, history: ConvertedHistory, files: dict[str, str],
                created_ms: int) -> None:
    """Write one agent. The agent record comes last: until it exists Letta Code does not see
    the agent, so an interrupted write is redone whole by the next run."""
    storage, agent_id = Path(storage), record["id"]
    if agent_record_path(storage, agent_id).exists():
        raise LettaCompatError(f"agent {agent_id} already exists in {storage}: never overwritten")
    conv, mem = conversation_dir(storage, agent_id), memory_dir(storage, agent_id)
    shutil.rmtree(conv, ignore_errors=True)  # leftovers of an interrupted run (no agent record yet)
    shutil.rmtree(mem, ignore_errors=True)
    created = _iso(created_ms)
    last_ms = max([m["timestamp"] for m in history.messages] or [created_ms])
    write_text_atomic(conv / "manifest.json", json.dumps({**TRANSCRIPT_MANIFEST, "created_at": created}, indent=2) + "\n")
    write_text_atomic(conv / "messages.jsonl",
           "\n".join(transcript_lines(agent_id, history.messages, created, str(storage))) + "\n")
    write_text_atomic(conv / "conversation.json", json.dumps({
        "id": DEFAULT_CONVERSATION, "agent_id": agent_id, "archived": False, "archived_at": None,
        "created_at": created, "updated_at": _iso(last_ms),
        "last_message_at": _iso(last_ms) if history.messages else None, "summary": None,
        "in_context_message_ids": history.in_context_ids}, indent=2, ensure_ascii=False) + "\n")
    commit_memory(mem, agent_id, files, created_ms)
    write_text_atomic(agent_record_path(storage, agent_id), json.dumps(record, indent=2, ensure_ascii=False) + "\n")
