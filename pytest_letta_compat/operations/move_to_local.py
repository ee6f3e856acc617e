"""``move-to-local``: agents of a Letta server (or of one of our backups) into Letta Code's
local backend, for a Letta Code release this project has proven the layout against.

The source is only read. Per agent: the record, the default conversation with the whole
history (in-context set kept), memory blocks as committed memfs files; what the local
backend has no place for (server tools, tool rules, archival passages, sources, identities,
tool environment variable names) is written beside it, in
``<storage>/letta-compat/left-behind/<agent id>.json``, and listed in the report. An agent
already in the storage directory is never overwritten; a second run of the same move adds
only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import LettaCompatError, register_secret
from ..paths import write_text_atomic
from ..rest.agents import blocks_of
from . import local_layout as layout

PROVEN_FILE = Path(__file__).resolve().parents[1] / "data" / "local_backend_proven.json"
# Lets exactly this Letta Code version through before it is proven: for the proving tests only.
PROVING_ENV = "LETTA_COMPAT_PROVING_LETTA_CODE"
OURS = "letta-compat"  # our folder in the storage directory
MOVES = "moves.json"


def proven_versions(path: Path = PROVEN_FILE) -> dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LettaCompatError(f"{path} is not valid JSON ({exc}).") from None
    return dict(data.get("versions") or {})


def record_proven(version: str, facts: dict, path: Path = PROVEN_FILE) -> None:
    """Add (or refresh) ``version`` in the proven list; scripts/record_local_backend_proven.py alone calls it."""
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.setdefault("about", "Letta Code releases whose local backend layout letta-compat move-to-local writes, "
                             "each proven by tests/tools/test_move_to_local.py with real runs "
                             "(recorded by scripts/record_local_backend_proven.py).")
    data.setdefault("versions", {})[version] = facts
    data["versions"] = dict(sorted(data["versions"].items(), key=lambda kv: [int(x) for x in kv[0].split(".")]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def forget_proven(version: str, path: Path = PROVEN_FILE) -> None:
    if not path.exists():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    if (data.get("versions") or {}).pop(version, None) is not None:
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_letta_code(version: str, cache: Path | None = None) -> str | None:
    """'' for a proven version (shipped, or by an earlier --prove here), a note when the proving
    tests let it through, None when it needs a proof first."""
    from .local_proof import proven_here

    if version in proven_versions() or (cache is not None and version in proven_here(cache)):
        return ""
    if os.environ.get(PROVING_ENV) == version:
        return f"Letta Code {version} is not proven yet ({PROVING_ENV} is set: a proving run)"
    return None


def _unproven(version: str) -> LettaCompatError:
    listed = ", ".join(proven_versions()) or "none"
    return LettaCompatError(
        f"--letta-code {version}: move-to-local is not proven against this Letta Code release (proven: {listed}). "
        "Add --prove to prove it first on a scratch copy of this same move (Letta Code in local mode must list "
        "every moved agent and answer as one; about a minute, nothing leaves this machine), or use a proven one.")


# -- sources --------------------------------------------------------------------------------
@dataclass
class SourceAgent:
    state: dict
    history: list[dict]
    passages: list[dict] | None  # None: the source does not hold them (a backup)


def _passages(api, agent_id: str) -> list[dict]:
    out: dict[str, dict] = {}
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100, "ascending": "true"}
        if after:
            params["after"] = after
        page = api.get(f"/v1/agents/{agent_id}/archival-memory", **params)
        fresh = [p for p in page if p.get("id") not in out]
        if not fresh:
            return list(out.values())
        out.update((p["id"], p) for p in fresh)
        after = page[-1]["id"]


def _select(listed: list[tuple[str, str]], names: list[str] | None, where: str) -> set[str]:
    """Ids of the agents named (by exact name or id); every agent without names."""
    if not names:
        return {agent_id for agent_id, _ in listed}
    chosen, unknown = set(), []
    for wanted in names:
        hits = {i for i, n in listed if wanted in (n, i)}
        chosen |= hits
        if not hits:
            unknown.append(wanted)
    if unknown:
        raise LettaCompatError(f"--agent {', '.join(map(repr, unknown))}: no such agent in {where} "
                               f"({len(listed)} agents there).")
    return chosen


def read_server(url: str, api_key: str | None, names: list[str] | None) -> tuple[str, list[SourceAgent]]:
    from ..rest.client import LettaAPI

    with LettaAPI(url, api_key=api_key) as api:
        version = api.version
        listed = api.list_agents()
        chosen = _select([(a["id"], a["name"]) for a in listed], names, f"the server at {api.url}")
        agents = []
        for a in listed:
            if a["id"] in chosen:
                agents.append(SourceAgent(api.agent(a["id"]), api.messages(a["id"]), _passages(api, a["id"])))
        return version, agents


def read_backup(directory: Path, names: list[str] | None) -> tuple[str, list[SourceAgent]]:
    from .backup import read_agent, read_manifest

    manifest = read_manifest(Path(directory))
    chosen = _select([(a.id, a.name) for a in manifest.agents], names, f"the backup {directory}")
    agents = []
    for record in manifest.agents:
        if record.id in chosen:
            backed = read_agent(Path(directory), record)
            state = {**backed.state, "name": record.name}  # the real name, not a temporary export one
            agents.append(SourceAgent(state, backed.history, None))
    return manifest.server_version, agents


# -- what has no place ----------------------------------------------------------------------
def _env_vars(state: dict) -> list[dict]:
    raw = state.get("secrets") or state.get("tool_exec_environment_variables") or []
    if isinstance(raw, dict):
        return [{"key": k, "value": v} for k, v in raw.items()]
    return [v for v in raw if isinstance(v, dict) and v.get("key")]


def left_behind(agent: SourceAgent, *, with_secret_values: bool) -> dict[str, Any]:
    state = agent.state
    tools = [{k: t.get(k) for k in ("name", "tool_type", "description", "source_type", "source_code", "json_schema")
              if t.get(k) is not None} for t in state.get("tools") or []]
    env = _env_vars(state)
    for var in env:
        register_secret(var.get("value"))
    return {
        "tools": tools,
        "tool_rules": list(state.get("tool_rules") or []),
        "archival_passages": (None if agent.passages is None else
                              [{k: p.get(k) for k in ("id", "text", "tags", "created_at")} for p in agent.passages]),
        "sources": [{k: s.get(k) for k in ("id", "name", "description")} for s in state.get("sources") or []],
        "identities": list(state.get("identity_ids") or []) or [i.get("id") for i in state.get("identities") or []],
        "tool_environment_variables": [{"key": v["key"], **({"value": v.get("value")} if with_secret_values else {})}
                                       for v in env],
        "tool_environment_variable_values_written": bool(with_secret_values and env),
    }


def describe_left_behind(left: dict[str, Any]) -> list[str]:
    parts = []
    if left["tools"]:
        custom = [t["name"] for t in left["tools"] if t.get("tool_type") in ("custom", None)]
        parts.append(f"{len(left['tools'])} server tools" + (f" (custom: {', '.join(custom)})" if custom else ""))
    if left["tool_rules"]:
        parts.append(f"{len(left['tool_rules'])} tool rules")
    if left["archival_passages"] is None:
        parts.append("archival passages unknown (a backup does not hold them: move from the server to carry them)")
    elif left["archival_passages"]:
        parts.append(f"{len(left['archival_passages'])} archival passages")
    if left["sources"]:
        parts.append(f"{len(left['sources'])} sources")
    if left["identities"]:
        parts.append(f"{len(left['identities'])} identities")
    if left["tool_environment_variables"]:
        names = ", ".join(v["key"] for v in left["tool_environment_variables"])
        how = "values written, file readable by you only" if left["tool_environment_variable_values_written"] else \
            "names only, values not written (--with-secret-values writes them)"
        parts.append(f"{len(left['tool_environment_variables'])} tool env vars: {names} ({how})")
    return parts


# -- the move -------------------------------------------------------------------------------
@dataclass
class AgentOutcome:
    name: str
    source_id: str
    local_id: str
    status: str  # "moved", "would move", "already moved", "failed"
    reason: str = ""
    model: str = ""
    model_how: str = ""
    messages_source: int = 0
    messages_moved: int = 0
    in_context: int = 0
    tool_calls: int = 0
    tool_results: int = 0
    not_carried: str = ""
    memory_files: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    left_behind_file: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def lines(self) -> list[str]:
        head = f"{self.name!r} ({self.source_id} -> {self.local_id}): {self.status}"
        if self.reason:
            head += f": {self.reason}"
        if self.status in ("already moved", "failed") and not self.model:
            return [head]
        out = [head, f"    model {self.model} ({self.model_how})",
               f"    history: {self.messages_moved} local messages from {self.messages_source} server messages "
               f"({self.tool_calls} tool calls, {self.tool_results} tool results), {self.in_context} in context",
               f"    memory: {len(self.memory_files)} blocks as committed files {', '.join(self.memory_files)}"]
        if self.not_carried:
            out.append(f"    not carried: {self.not_carried}")
        where = f" (in {self.left_behind_file})" if self.left_behind_file else ""
        out.append(f"    left behind{where}: {'; '.join(self.left_behind) or 'nothing'}")
        return out


@dataclass
class MoveReport:
    source: str
    source_version: str
    letta_code: str
    storage_dir: str
    dry_run: bool
    outcomes: list[AgentOutcome]
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def format(self) -> str:
        verb = "would move (dry run, nothing written)" if self.dry_run else "moving"
        lines = [f"{verb} {len(self.outcomes)} agents from Letta {self.source_version} ({self.source}) into the "
                 f"Letta Code {self.letta_code} local backend at {self.storage_dir}"]
        if self.note:
            lines.append(f"note: {self.note}")
        for outcome in self.outcomes:
            lines += outcome.lines()
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) or "no agents")
        return "\n".join(lines)


def _check_storage(storage: Path, merge: bool) -> None:
    if storage.exists() and not storage.is_dir():
        raise LettaCompatError(f"--storage-dir {storage} is a file, not a directory.")
    if not storage.exists() or merge or (storage / OURS / MOVES).exists():
        return  # a storage dir we moved into before: re-running the move only adds what is missing
    if any(storage.iterdir()):
        raise LettaCompatError(f"--storage-dir {storage} is not empty: pass --merge to add the moved agents beside "
                               "what is there (no agent is ever overwritten).")


def _moves(storage: Path) -> dict[str, dict]:
    path = storage / OURS / MOVES
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("agents", {})
    except (OSError, ValueError):
        return {}


def _plan(agent: SourceAgent, model: str | None) -> tuple[dict, layout.ConvertedHistory, dict[str, str], str]:
    state = agent.state
    local_id = layout.local_agent_id(state["id"])
    handle, how = layout.map_model(state.get("llm_config"), model)
    history = layout.convert_history(agent.history, state, local_id, handle)
    files = layout.memory_files(blocks_of(state))
    return layout.agent_record(state, local_id, handle), history, files, how


def move_to_local(*, letta_code: str, storage_dir: Path, url: str | None = None, api_key: str | None = None,
                  backup_dir: Path | None = None, model: str | None = None, agents: list[str] | None = None,
                  dry_run: bool = False, merge: bool = False, with_secret_values: bool = False,
                  prove: bool = False, cache: Path | None = None, trial: bool = False,
                  progress: Callable[[str], None] = lambda line: None,
                  prove_progress: Callable[[str], None] = lambda line: None) -> MoveReport:
    if (url is None) == (backup_dir is None):
        raise LettaCompatError("give the source: either --url URL (a running server) or --backup DIR (one of our backups).")
    note = "" if trial else check_letta_code(letta_code, cache)  # a trial move is what the proof reads
    if note is None:
        if not prove or cache is None:
            raise _unproven(letta_code)
        note = _prove_first(letta_code, cache, url=url, api_key=api_key, backup_dir=backup_dir, agents=agents,
                            progress=prove_progress)
    if model is not None and ("/" not in model or model.startswith("/") or model.endswith("/")):
        raise LettaCompatError(f"--model {model!r}: expected a local model handle PROVIDER/MODEL, e.g. lmstudio/qwen3-8b.")
    storage = Path(storage_dir).expanduser().absolute()
    _check_storage(storage, merge)
    if url is not None:
        version, sources = read_server(url, api_key, agents)
        source = url
    else:
        version, sources = read_backup(Path(backup_dir), agents)
        source = f"backup {backup_dir}"
    existing = layout.list_agent_records(storage) if storage.exists() else {}
    moved_before = _moves(storage)
    report = MoveReport(source, version, letta_code, str(storage), dry_run, [], note)
    for agent in sources:
        state = agent.state
        local_id = layout.local_agent_id(state["id"])
        outcome = AgentOutcome(state["name"], state["id"], local_id, "would move" if dry_run else "moved")
        report.outcomes.append(outcome)
        if local_id in existing:
            if moved_before.get(local_id, {}).get("source_id") == state["id"]:
                outcome.status, outcome.reason = "already moved", "in the storage dir from an earlier run; left as it is"
            else:
                outcome.status = "failed"
                outcome.reason = f"an agent with id {local_id} already exists in the storage dir; it is never overwritten"
            progress("\n".join(outcome.lines()))
            continue
        try:
            record, history, files, how = _plan(agent, model)
            left = left_behind(agent, with_secret_values=with_secret_values)
            outcome.model, outcome.model_how = record["model"], how
            outcome.messages_source, outcome.messages_moved = len({m.get("id") for m in agent.history}), len(history.messages)
            outcome.in_context, outcome.not_carried = len(history.in_context_ids), history.describe_dropped()
            outcome.tool_calls, outcome.tool_results = history.tool_calls, history.tool_results
            outcome.memory_files, outcome.left_behind = list(files), describe_left_behind(left)
            if not dry_run:
                left_file = storage / OURS / "left-behind" / f"{local_id}.json"
                outcome.left_behind_file = str(left_file)
                _write_private(left_file, {"agent": state["name"], "source_id": state["id"], "local_id": local_id,
                                           "source": source, "source_version": version, **left})
                created = layout.epoch_ms(state.get("created_at")) or int(time.time() * 1000)
                layout.write_agent(storage, record, history, files, created)
                _record_move(storage, local_id, state, source, version, letta_code)
        except LettaCompatError as exc:
            outcome.status, outcome.reason = "failed", str(exc)
        except OSError as exc:
            outcome.status, outcome.reason = "failed", f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}"
        progress("\n".join(outcome.lines()))
    return report


def _prove_first(version: str, cache: Path, *, progress: Callable[[str], None], **source: Any) -> str:
    """The same move into a scratch directory, proven there with the real Letta Code ``version``."""
    import shutil
    import tempfile

    from .local_proof import PROOF_MODEL, prove

    scratch = Path(tempfile.mkdtemp(prefix="letta-compat-proof-store-"))
    try:
        progress(f"Letta Code {version} is not proven for move-to-local yet: proving it on a scratch copy of this move")
        trial = move_to_local(letta_code=version, storage_dir=scratch / "store", model=f"lmstudio/{PROOF_MODEL}",
                              trial=True, **source)
        moved = {o.local_id: o.name for o in trial.outcomes if o.status == "moved"}
        if not trial.ok or not moved:
            raise LettaCompatError(f"move-to-local is NOT proven for Letta Code {version}: the scratch move itself "
                                   "did not succeed (run it with --dry-run to see why). Nothing was moved.")
        facts = prove(version, scratch / "store", moved, cache, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return (f"Letta Code {version} proven just now on a scratch copy of this move: it lists all {facts['agents']} "
            f"agents and answers as one ({facts['seconds']} s); remembered in {cache}")


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False), mode=0o600)


def _record_move(storage: Path, local_id: str, state: dict, source: str, version: str, letta_code: str) -> None:
    path = storage / OURS / MOVES
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"agents": {}}
    data["agents"][local_id] = {"source_id": state["id"], "name": state["name"], "source": source,
                                "source_version": version, "letta_code": letta_code,
                                "moved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_private(path, data)


def report_json(report: MoveReport) -> dict:
    return {**{k: v for k, v in asdict(report).items() if k != "outcomes"},
            "outcomes": [asdict(o) for o in report.outcomes], "ok": report.ok}
