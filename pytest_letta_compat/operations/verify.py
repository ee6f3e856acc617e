"""``verify``: is every agent of a backup on a server, whole?

Compared per agent: name, system prompt, memory blocks (label and value), tools (names),
and messages.  "Messages" are *stored* messages counted per role (system, user, assistant,
tool): servers list one stored message as several typed messages, and how many differs
between versions (0.11.x shows reasoning + send_message call, 0.16.x reasoning + assistant
text), but each typed message carries its stored message's id, so the number of distinct
ids per role is the same on both sides when nothing was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .agentfile import MARKER, role_counts
from .backup import AgentRecord, read_agent, read_manifest
from ..rest.agents import blocks_of
from ..rest.client import LettaAPI
from .restore import STATE_FILE, RestoreState

FIELDS = ("name", "system", "blocks", "tools", "messages")


@dataclass
class VerifyRow:
    source_id: str
    name: str
    target_id: str | None
    compared: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.target_id is not None and not self.differences


@dataclass
class VerifyReport:
    target_url: str
    target_version: str
    rows: list[VerifyRow]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def format_table(self) -> str:
        width = max([len(repr(r.name)) for r in self.rows] + [5])
        lines = [f"{'agent':<{width}}  {'target id':<42}  " + "  ".join(f"{f:<8}" for f in FIELDS) + "  result"]
        for r in self.rows:
            marks = []
            for f in FIELDS:
                bad = any(d.startswith(f + ":") for d in r.differences)
                marks.append("DIFF" if bad else ("ok" if f in r.compared else "-"))
            lines.append(f"{r.name!r:<{width}}  {r.target_id or 'MISSING':<42}  "
                         + "  ".join(f"{m:<8}" for m in marks) + f"  {'OK' if r.ok else 'FAIL'}")
        for r in self.rows:
            for d in r.differences:
                lines.append(f"  {r.name!r}: {d}")
        good = sum(r.ok for r in self.rows)
        lines.append(f"{good} of {len(self.rows)} agents verified on Letta {self.target_version} at {self.target_url}")
        return "\n".join(lines)


def _blocks(state: dict) -> dict[str, str]:
    return {b["label"]: b["value"] for b in blocks_of(state)}


def _tools(state: dict) -> list[str]:
    return sorted(t["name"] for t in state.get("tools") or [])


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _compare(record: AgentRecord, backed_up: dict, target: dict, counts: dict) -> list[str]:
    diffs = []
    if target["name"] != record.name:
        diffs.append(f"name: {_short(target['name'])} instead of {_short(record.name)}")
    if target.get("system") != backed_up.get("system"):
        diffs.append(f"system: the prompt differs ({len(target.get('system') or '')} vs "
                     f"{len(backed_up.get('system') or '')} characters)")
    want, have = _blocks(backed_up), _blocks(target)
    for label in sorted(set(want) | set(have)):
        if label not in have:
            diffs.append(f"blocks: {label!r} is missing")
        elif label not in want:
            diffs.append(f"blocks: {label!r} is extra")
        elif want[label] != have[label]:
            diffs.append(f"blocks: {label!r} holds {len(have[label])} characters, the backup {len(want[label])}, "
                         "and they differ")
    if _tools(target) != _tools(backed_up):
        missing = sorted(set(_tools(backed_up)) - set(_tools(target)))
        extra = sorted(set(_tools(target)) - set(_tools(backed_up)))
        diffs.append(f"tools: missing {missing}, extra {extra}")
    if counts != record.messages_by_role:
        diffs.append(f"messages: {counts} where the backup has {record.messages_by_role}")
    return diffs


def _locate(api: LettaAPI, record: AgentRecord, marked: dict, mapping: dict, by_name: dict) -> dict | None:
    """The target's agent for ``record``: the same id (an upgraded database), then the
    restore marker, then restore-state.json, then a unique agent of the same name."""
    for candidate in (record.id, *(marked.get(record.id) or []), mapping.get(record.id)):
        if candidate:
            agent = api.find_agent(candidate)
            if agent:
                return agent
    named = by_name.get(record.name) or []
    return api.agent(named[0]) if len(named) == 1 else None


def verify(url: str, backup_dir: Path, *, api_key: str | None = None) -> VerifyReport:
    """Compare every agent of the backup in ``backup_dir`` with the server at ``url``."""
    manifest = read_manifest(backup_dir)
    with LettaAPI(url, api_key=api_key) as api:
        marked: dict[str, list[str]] = {}
        by_name: dict[str, list[str]] = {}
        for agent in api.list_agents():
            source = (agent.get("metadata") or {}).get(MARKER)
            if source:
                marked.setdefault(source, []).append(agent["id"])
            by_name.setdefault(agent["name"], []).append(agent["id"])
        mapping = RestoreState(backup_dir, api.url).mapping if (Path(backup_dir) / STATE_FILE).exists() else {}
        rows = []
        for record in manifest.agents:
            row = VerifyRow(record.id, record.name, None)
            rows.append(row)
            try:
                backed_up = read_agent(backup_dir, record).state
            except Exception as exc:
                row.differences.append(f"backup: {exc}")
                continue
            target = _locate(api, record, marked, mapping, by_name)
            if target is None:
                row.differences.append("name: no agent of this name or origin on the target")
                continue
            row.target_id = target["id"]
            row.compared = list(FIELDS)
            row.differences = _compare(record, backed_up, target, role_counts(api.messages(target["id"])))
        return VerifyReport(api.url, api.version, rows)
