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
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LettaCompatError
from ..paths import new_directory, write_text_atomic
from ..postgres.client import connect, dsn_params, pg_dump
from ..schema.inspect import alembic_revision
from .agentfile import agent_of, is_agent_file, is_legacy, role_counts
from ..rest.agents import blocks_of
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
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))
    return sha256_of(path)


def read_json(backup_dir: Path, relative: str, sha256: str | None = None) -> Any:
    """A file of the backup, checked against the manifest; a clear error naming it if not."""
    path = Path(backup_dir) / relative
    shown = f"{backup_dir}/{relative}"  # as manifest.json spells it: Path would fold `//` (and unmask a URL)
    if not path.is_file():
        raise LettaCompatError(f"The backup file {shown} is missing.")
    if sha256 and sha256_of(path) != sha256:
        raise LettaCompatError(f"The backup file {shown} is corrupt or truncated: its sha256 does not "
                               "match the one manifest.json recorded when the backup was taken.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # the position only: never the file's text
        raise LettaCompatError(f"The backup file {shown} is not valid JSON (line {exc.lineno}, column "
                               f"{exc.colno}).") from None
    except (ValueError, RecursionError):
        raise LettaCompatError(f"The backup file {shown} is not valid JSON (not UTF-8 text, or nested too "
                               "deeply).") from None


# -- reading a backup -----------------------------------------------------------------------
_STR, _OPT_STR, _INT = (str,), (str, type(None)), (int,)
_MANIFEST_FIELDS = {"source_url": _STR, "server_version": _STR, "created_at": _STR, "agents": (list,),
                    "alembic_revision": _OPT_STR, "database_dump": _OPT_STR, "database_dump_sha256": _OPT_STR,
                    "format": _INT}
_RECORD_FIELDS = {"id": _STR, "name": _STR, "format": _STR, "messages": _INT, "messages_by_role": (dict,),
                  "blocks": _INT, "tools": _INT, "in_context_ids": (list,), "files": (dict,), "export_name": _OPT_STR}
_REQUIRED = {"source_url", "server_version", "created_at", "agents", "id", "name", "format", "messages",
             "messages_by_role", "blocks", "tools", "in_context_ids", "files"}


def _inside(relative: str) -> bool:
    """A path of the manifest stays inside the backup directory."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts and "\x00" not in relative


def _checked(data: object, fields: dict, where: str, path: Path) -> dict:
    """``data`` as a mapping of exactly ``fields`` (each of its type), or a one-line error."""
    bad = lambda what: LettaCompatError(  # noqa: E731
        f"{path} is not a letta-compat backup manifest: {what}. Use a directory written by "
        "`letta-compat backup`, unchanged.")
    if not isinstance(data, dict):
        raise bad(f"{where} is {type(data).__name__}, expected a JSON object")
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise bad(f"{where} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))}")
    missing = sorted(k for k in fields if k in _REQUIRED and k not in data)
    if missing:
        raise bad(f"{where} lacks {', '.join(missing)}")
    prefix = "" if where == "it" else f"{where}."
    for key, value in data.items():
        types = fields[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(f"`{prefix}{key}` is {type(value).__name__}, expected {' or '.join(t.__name__ for t in types)}")
    return data


def read_manifest(backup_dir: Path) -> Manifest:
    backup_dir = Path(backup_dir)
    if not backup_dir.is_dir():
        raise LettaCompatError(f"{backup_dir} is not a directory: give a backup directory written by "
                               "`letta-compat backup`.")
    path = backup_dir / MANIFEST
    data = _checked(read_json(backup_dir, MANIFEST), _MANIFEST_FIELDS, "it", path)
    if data.get("format", FORMAT) != FORMAT:
        raise LettaCompatError(f"{path} has format {data['format']}; this letta-compat reads {FORMAT}.")
    agents = []
    for i, raw in enumerate(data["agents"]):
        record = _checked(raw, _RECORD_FIELDS, f"agents[{i}]", path)
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                   for k, v in record["messages_by_role"].items()):
            raise LettaCompatError(f"{path} is not a letta-compat backup manifest: agents[{i}].messages_by_role "
                                   "must map roles to counts.")
        if not all(isinstance(v, str) for v in record["in_context_ids"]):
            raise LettaCompatError(f"{path} is not a letta-compat backup manifest: agents[{i}].in_context_ids "
                                   "must be a list of message ids.")
        if not all(isinstance(k, str) and _inside(k) and isinstance(v, str) for k, v in record["files"].items()):
            raise LettaCompatError(f"{path} is not a letta-compat backup manifest: agents[{i}].files must map "
                                   "paths inside the backup directory to sha256 digests.")
        agents.append(AgentRecord(**record))
    if data.get("database_dump") is not None and not _inside(data["database_dump"]):
        raise LettaCompatError(f"{path} is not a letta-compat backup manifest: database_dump must be a path "
                               "inside the backup directory.")
    return Manifest(**{**data, "agents": agents}, directory=backup_dir)


@dataclass
class BackedUpAgent:
    record: AgentRecord
    state: dict
    export: dict
    history: list[dict]


def read_agent(backup_dir: Path, record: AgentRecord) -> BackedUpAgent:
    """One agent's files, checksums checked; LettaCompatError naming the bad file."""
    files = {Path(rel).name: (rel, read_json(backup_dir, rel, digest)) for rel, digest in record.files.items()}
    missing = {"agent.json", "export.json", "history.json"} - set(files)
    if missing:
        raise LettaCompatError(f"manifest.json in {backup_dir} lists no {sorted(missing)} for agent {record.id}.")
    for name, (rel, data) in files.items():
        shape = ((name == "history.json" and isinstance(data, list) and all(
                     isinstance(m, dict) and isinstance(m.get("id"), str) for m in data))
                 or (name == "agent.json" and isinstance(data, dict) and isinstance(data.get("name"), str))
                 or (name == "export.json" and (is_legacy(data) or is_agent_file(data))))
        if name in ("agent.json", "export.json", "history.json") and not shape:
            expected = {"history.json": "a list of messages with ids", "agent.json": "an agent (an object with a name)",
                        "export.json": "an agent export (legacy or agent file)"}[name]
            raise LettaCompatError(f"The backup file {Path(backup_dir) / rel} is not {expected}.")
    return BackedUpAgent(record, files["agent.json"][1], files["export.json"][1], files["history.json"][1])


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
            raise LettaCompatError(f"The database archive {backup_dir}/{manifest.database_dump} is missing or does "
                                   "not match manifest.json.")
    return manifest


# -- taking a backup ------------------------------------------------------------------------
def _export(api: LettaAPI, agent: dict) -> tuple[dict, str | None]:
    """The agent's export; names 0.13+ refuses to export ("/" and the like) are swapped for
    a temporary safe one around the export, and always put back."""
    try:
        return api.export_agent(agent["id"]), None
    except LettaAPIError as exc:
        if exc.kind != LettaAPIError.NAME_REFUSED:
            raise
    temporary = safe_name(agent["name"], agent["id"])
    api.rename_agent(agent["id"], temporary)
    try:
        return api.export_agent(agent["id"]), temporary
    finally:
        api.rename_agent(agent["id"], agent["name"])


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
        messages=sum(counts.values()), messages_by_role=counts, blocks=len(blocks_of(state)),
        tools=len(state.get("tools") or []), in_context_ids=list(state.get("message_ids") or []),
        files=files, export_name=export_name)


def backup(url: str, out_dir: Path, *, api_key: str | None = None, dsn: str | None = None,
           progress=print) -> Manifest:
    """Back up every agent of the server at ``url`` into ``out_dir``, then re-read all of it."""
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise LettaCompatError(f"{out} already holds a backup (manifest.json); choose a new --out directory.")
    new_directory(out, "--out", "Give a new directory (it is created, readable by you only) or an empty one.")
    if dsn:
        dsn_params(dsn)  # a malformed --dsn fails before anything is written
    with LettaAPI(url, api_key=api_key) as api:
        version = api.version  # a wrong --url fails before anything is written
        listed = api.list_agents()
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(out, 0o700)  # agent states and exports hold tool secrets
        try:
            return _backup_into(api, out, version, listed, dsn, progress)
        except BaseException:
            if created:  # nothing half-written is left behind to be mistaken for a backup
                shutil.rmtree(out, ignore_errors=True)
            raise


def _backup_into(api: LettaAPI, out: Path, version: str, listed: list[dict], dsn: str | None, progress) -> Manifest:
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
