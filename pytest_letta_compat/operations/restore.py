"""``restore``: import every agent of a backup into a server of any supported version.

Idempotent and resumable.  Each imported agent carries the metadata key
``letta_compat_source_id`` (its id in the backup), and ``restore-state.json`` in the backup
directory maps backed-up ids to new ids per target server.  A re-run skips agents that are
there in full, finishes one that is there under its temporary name, and replaces one whose
import was cut short (fewer messages than the backup) — it never imports an agent twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LettaCompatError
from .agentfile import (MARKER, agent_of, convert_legacy, is_legacy, legacy_with_full_history, role_counts,
                        with_full_history)
from .backup import BackedUpAgent, Manifest, needs_safe_name, read_agent, read_manifest, safe_name, write_json
from ..rest.client import LettaAPI

STATE_FILE = "restore-state.json"

RESTORED = "restored"
PRESENT = "skipped-already-present"
FAILED = "failed"


@dataclass
class AgentOutcome:
    source_id: str
    name: str
    status: str
    reason: str = ""
    target_id: str | None = None


@dataclass
class RestoreReport:
    target_url: str
    target_version: str
    outcomes: list[AgentOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status != FAILED for o in self.outcomes)

    @property
    def failed(self) -> list[AgentOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]


class RestoreState:
    """``restore-state.json``: {target url: {backed-up id: new id}}, written after every agent."""

    def __init__(self, backup_dir: Path, target_url: str):
        self.path = Path(backup_dir) / STATE_FILE
        self.target = target_url
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        except (OSError, ValueError):
            self.data = {}  # a state file cut short: the markers on the target still say what is there
        if not isinstance(self.data, dict):
            self.data = {}  # not ours (or mangled): the markers on the target still say what is there
        mapping = self.data.get(target_url)
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in mapping.items()):
            mapping = self.data[target_url] = {}
        self.mapping: dict[str, str] = mapping

    def record(self, source_id: str, target_id: str | None) -> None:
        if target_id is None:
            self.mapping.pop(source_id, None)
        else:
            self.mapping[source_id] = target_id
        write_json(self.path, self.data)


def agent_file_for(agent: BackedUpAgent, *, legacy_target: bool, name: str) -> dict:
    """What to POST to /v1/agents/import on the target: its format, the whole history, the
    given name and the marker."""
    record, export = agent.record, agent.export
    if legacy_target:
        if not is_legacy(export):
            raise LettaCompatError(
                f"Agent {record.name!r} was backed up from Letta 0.12+ (AgentFileSchema); a 0.11.x server "
                "only imports its own legacy format. Restore into 0.12 or newer.")
        result = legacy_with_full_history(export, agent.history, record.in_context_ids)
        result["metadata_"] = {**(result.get("metadata_") or {}), MARKER: record.id}
    elif is_legacy(export):
        result = convert_legacy(export, agent.history, in_context_ids=record.in_context_ids)
    else:
        result = with_full_history(export, agent.history, record.in_context_ids)
    target_agent = agent_of(result)
    target_agent["name"] = name
    if not legacy_target:
        target_agent["metadata"] = {**(target_agent.get("metadata") or {}), MARKER: record.id}
    return result


class _Restorer:
    def __init__(self, api: LettaAPI, manifest: Manifest, progress):
        self.api = api
        self.manifest = manifest
        self.progress = progress
        self.state = RestoreState(manifest.directory, api.url)
        self.legacy_target = not api.imports_agent_files
        self.marked: dict[str, list[dict]] = {}
        for agent in api.list_agents():
            source = (agent.get("metadata") or {}).get(MARKER)
            if source:
                self.marked.setdefault(source, []).append(agent)

    def _counts(self, agent_id: str) -> dict[str, int]:
        return role_counts(self.api.messages(agent_id))

    def _existing(self, source_id: str) -> list[dict]:
        """Agents on the target that are this backed-up agent: the original itself (a restore
        onto the database it came from), or ones a previous run imported."""
        found = {a["id"]: a for a in self.marked.get(source_id, [])}
        for candidate in (source_id, self.state.mapping.get(source_id)):
            if candidate and candidate not in found:
                agent = self.api.find_agent(candidate)
                if agent and (candidate != source_id or agent.get("name") == self._record(source_id).name):
                    found[agent["id"]] = agent
        return list(found.values())

    def _record(self, source_id: str):
        return self.manifest.agent(source_id)

    def restore_one(self, record) -> AgentOutcome:
        for existing in self._existing(record.id):
            if self._counts(existing["id"]) != record.messages_by_role:
                if existing["id"] == record.id:
                    raise LettaCompatError(f"the original agent {record.id} is on the target with a different "
                                           "history; not touching it")
                self.progress(f"    {existing['id']} holds a cut-short import of it: deleting it, importing again")
                self.api.delete_agent(existing["id"])
                self.state.record(record.id, None)
                continue
            if existing["name"] != record.name:  # cut off between import and rename
                self.api.rename_agent(existing["id"], record.name)
            self.state.record(record.id, existing["id"])
            return AgentOutcome(record.id, record.name, PRESENT, "already on the target in full", existing["id"])
        agent = read_agent(self.manifest.directory, record)
        temporary = safe_name(record.name, record.id) if needs_safe_name(record.name) else None
        new_id = self.api.import_agent(agent_file_for(agent, legacy_target=self.legacy_target,
                                                      name=temporary or record.name))
        self.state.record(record.id, new_id)
        if temporary:
            self.api.rename_agent(new_id, record.name)
        counts = self._counts(new_id)
        if counts != record.messages_by_role:
            return AgentOutcome(record.id, record.name, FAILED,
                                f"imported as {new_id}, but it lists messages {counts} where the backup has "
                                f"{record.messages_by_role}", new_id)
        note = f" (imported as {temporary!r}, name set back)" if temporary else ""
        return AgentOutcome(record.id, record.name, RESTORED, f"{record.messages} messages{note}", new_id)


def restore(url: str, backup_dir: Path, *, api_key: str | None = None, progress=print) -> RestoreReport:
    """Import every agent of the backup in ``backup_dir`` into the server at ``url``."""
    manifest = read_manifest(backup_dir)
    with LettaAPI(url, api_key=api_key) as api:
        report = RestoreReport(api.url, api.version)
        restorer = _Restorer(api, manifest, progress)
        progress(f"restoring {len(manifest.agents)} agents from {backup_dir} (Letta {manifest.server_version}) "
                 f"into Letta {api.version} at {api.url}")
        for record in manifest.agents:
            try:
                outcome = restorer.restore_one(record)
            except Exception as exc:  # one agent's problem must not stop the others
                reason = str(exc) if isinstance(exc, LettaCompatError) else f"{type(exc).__name__}: {exc}"
                outcome = AgentOutcome(record.id, record.name, FAILED, reason)
            report.outcomes.append(outcome)
            target = f" -> {outcome.target_id}" if outcome.target_id else ""
            progress(f"  {outcome.status:<24} {record.name!r} ({record.id}{target}): {outcome.reason}")
    return report
