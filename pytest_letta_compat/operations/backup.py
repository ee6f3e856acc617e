"""``backup``: every agent of a server (export + full history), a manifest, optionally pg_dump.

Layout of a backup directory::

    manifest.json                       ids, names, counts, sha256 of every file below
    agents/<agent id>/agent.json        the agent as GET /v1/agents/{id} returns it
    agents/<agent id>/export.json       GET /v1/agents/{id}/export (legacy on 0.11.x)
    agents/<agent id>/history.json      every message, paged (exports keep only ~50)
    database.dump                       pg_dump -Fc, with --dsn

Exports and agent states hold tool secrets as the server returns them: the directory is
created readable by its owner only.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LettaCompatError
from ..postgres.client import connect, pg_dump
from ..schema.inspect import alembic_revision
from .agentfile import agent_of, is_legacy, role_counts
from ..rest.client import LettaAPI, LettaAPIError

MANIFEST = "manifest.json"
DATABASE_DUMP = "database.dump"
FORMAT = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9 _-]+$")  # what every version's create/import accepts


@dataclass
class AgentRecord:
    id: str
    name: str  # the real name, even when it was exported under a temporary one
    format: str  # "legacy" (0.11.x AgentSchema) or "agentfile" (AgentFileSchema)
    messages: int  # stored messages in the history
    messages_by_role: dict[str, int]
    blocks: int
    tools: int
    in_context_ids: list[str]
    files: dict[str, str]  # path relative to the backup directory -> sha256
    export_name: str | None = None  # the temporary name the export was taken under


@dataclass
class Manifest:
    source_url: str
    server_version: str
    created_at: str
    agents: list[AgentRecord]
    alembic_revision: str | None = None
    database_dump: str | None = None
    database_dump_sha256: str | None = None
    format: int = FORMAT
    directory: Path | None = field(default=None, compare=False)

    def agent(self, agent_id: str) -> AgentRecord | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("directory")
        return data


def safe_name(name: str, agent_id: str) -> str:
    """A temporary name every version accepts, recognisably tied to the agent."""
    return f"{re.sub(r'[^A-Za-z0-9 _-]', '_', name)[:40]}-{agent_id[-8:]}"


def needs_safe_name(name: str) -> bool:
    return not _SAFE_NAME.match(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> str:
    """Write atomically (a crash never leaves half a file under the real name); sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)
    return sha256_of(path)


def read_json(backup_dir: Path, relative: str, sha256: str | None = None) -> Any:
    """A file of the backup, checked against the manifest; a clear error naming it if not."""
    path = Path(backup_dir) / relative
    if not path.is_file():
        raise LettaCompatError(f"The backup file {path} is missing.")
    if sha256 and sha256_of(path) != sha256:
        raise LettaCompatError(f"The backup file {path} is corrupt or truncated: its sha256 does not "
                               "match the one manifest.json recorded when the backup was taken.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LettaCompatError(f"The backup file {path} is not valid JSON ({exc}).") from exc


# -- reading a backup -----------------------------------------------------------------------
def read_manifest(backup_dir: Path) -> Manifest:
    backup_dir = Path(backup_dir)
    data = read_json(backup_dir, MANIFEST)
    try:
        agents = [AgentRecord(**a) for a in data.pop("agents")]
        manifest = Manifest(**data, agents=agents, directory=backup_dir)
    except (KeyError, TypeError) as exc:
        raise LettaCompatError(f"{backup_dir / MANIFEST} is not a letta-compat backup manifest ({exc}).") from exc
    if manifest.format != FORMAT:
        raise LettaCompatError(f"{backup_dir / MANIFEST} has format {manifest.format}; this letta-compat reads {FORMAT}.")
    return manifest


@dataclass
class BackedUpAgent:
    record: AgentRecord
    state: dict
    export: dict
    history: list[dict]


def read_agent(backup_dir: Path, record: AgentRecord) -> BackedUpAgent:
    """One agent's files, checksums checked; LettaCompatError naming the bad file."""
    files = {Path(rel).name: read_json(backup_dir, rel, digest) for rel, digest in record.files.items()}
    missing = {"agent.json", "export.json", "history.json"} - set(files)
    if missing:
        raise LettaCompatError(f"manifest.json in {backup_dir} lists no {sorted(missing)} for agent {record.id}.")
    return BackedUpAgent(record, files["agent.json"], files["export.json"], files["history.json"])


def load_backup(backup_dir: Path) -> Manifest:
    """Re-read a whole backup: every file present, every checksum and count as recorded."""
    manifest = read_manifest(backup_dir)
    for record in manifest.agents:
        agent = read_agent(backup_dir, record)
        counts = role_counts(agent.history)
        if counts != record.messages_by_role:
            raise LettaCompatError(
                f"The backup of agent {record.name!r} ({record.id}) in {backup_dir} holds messages "
                f"{counts}, but manifest.json recorded {record.messages_by_role}.")
    if manifest.database_dump:
        dump = Path(backup_dir) / manifest.database_dump
        if not dump.is_file() or sha256_of(dump) != manifest.database_dump_sha256:
            raise LettaCompatError(f"The database archive {dump} is missing or does not match manifest.json.")
    return manifest


# -- taking a backup ------------------------------------------------------------------------
def _export(api: LettaAPI, agent: dict) -> tuple[dict, str | None]:
    """The agent's export; names 0.13+ refuses to export ("/" and the like) are swapped for
    a temporary safe one around the export, and always put back."""
    try:
        return api.export_agent(agent["id"]), None
    except LettaAPIError as exc:
        if exc.status != 500 or "invalid characters" not in str(exc):
            raise
    temporary = safe_name(agent["name"], agent["id"])
    api.rename_agent(agent["id"], temporary)
    try:
        return api.export_agent(agent["id"]), temporary
    finally:
        api.rename_agent(agent["id"], agent["name"])


def _blocks_of(state: dict) -> list[dict]:
    return (state.get("memory") or {}).get("blocks") or state.get("blocks") or []


def _backup_agent(api: LettaAPI, out: Path, listed: dict) -> AgentRecord:
    state = api.agent(listed["id"])
    export, export_name = _export(api, state)
    history = api.messages(state["id"])
    folder = f"agents/{state['id']}"
    files = {f"{folder}/{name}.json": write_json(out / folder / f"{name}.json", data)
             for name, data in (("agent", state), ("export", export), ("history", history))}
    counts = role_counts(history)
    return AgentRecord(
        id=state["id"], name=state["name"], format="legacy" if is_legacy(export) else "agentfile",
        messages=sum(counts.values()), messages_by_role=counts, blocks=len(_blocks_of(state)),
        tools=len(state.get("tools") or []), in_context_ids=list(state.get("message_ids") or []),
        files=files, export_name=export_name)


def backup(url: str, out_dir: Path, *, api_key: str | None = None, dsn: str | None = None,
           progress=print) -> Manifest:
    """Back up every agent of the server at ``url`` into ``out_dir``, then re-read all of it."""
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise LettaCompatError(f"{out} already holds a backup (manifest.json); choose a new --out directory.")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    with LettaAPI(url, api_key=api_key) as api:
        version = api.version
        listed = api.list_agents()
        progress(f"backing up {len(listed)} agents from Letta {version} at {api.url}")
        records = []
        for agent in listed:
            record = _backup_agent(api, out, agent)
            records.append(record)
            renamed = f" (exported as {record.export_name!r}, name put back)" if record.export_name else ""
            progress(f"  {record.name!r} ({record.id}): {record.messages} messages, {record.blocks} blocks, "
                     f"{record.tools} tools{renamed}")
    manifest = Manifest(source_url=api.url, server_version=version, agents=records,
                        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if dsn:
        with connect(dsn) as conn:
            manifest.alembic_revision = alembic_revision(conn)
        pg_dump(dsn, out / DATABASE_DUMP)
        manifest.database_dump, manifest.database_dump_sha256 = DATABASE_DUMP, sha256_of(out / DATABASE_DUMP)
        progress(f"  database at alembic revision {manifest.alembic_revision}: {DATABASE_DUMP}")
    write_json(out / MANIFEST, manifest.to_json())
    reread = load_backup(out)
    if [a.id for a in reread.agents] != [a["id"] for a in listed] or reread.to_json() != manifest.to_json():
        raise LettaCompatError(f"The backup in {out} does not read back as written: do not rely on it.")
    for record in reread.agents:
        name = agent_of(read_agent(out, record).export).get("name")
        if name not in (record.name, record.export_name):
            raise LettaCompatError(f"{out}/agents/{record.id}/export.json is of agent {name!r}, not {record.name!r}.")
    manifest.directory = out
    return manifest
