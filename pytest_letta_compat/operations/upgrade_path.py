"""One [[upgrade]] path, seeded, upgraded and started once, for every check that looks at it.

``UpgradePath.build()`` seeds a database of the old release through a live old server (the
incident's agents, with history, plus an archival passage) and backs it up, or restores both
from the seed cache an earlier run left (``seed_cache_dir``: named by the template and the
seeding's source, so a changed release, image or seeding never reuses a stale one; the copy
is pointed at this run's fake LLM), and upgrades a copy
through ``apply_upgrade`` (what ``letta-compat upgrade --apply`` runs: backup gate, alembic,
fix-ups). Both databases are then kept as templates, never served: a check reads them, or
takes its own copy (``clone``, ~0.04 s) when it must change something. ``old_server()`` and
``new_server()`` start the old release on a copy of the seeded database and the new one on a
copy of the upgraded database, once each, when a check first asks for them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

from ..backends.base import LettaBackend, LettaStack
from ..cache import locked
from ..paths import atomic_path
from ..provision.fake_llm import FakeLLM
from ..provision.procs import free_port
from ..rest.agents import create_agent, empty_archive, insert_passage, send_message
from .backup import backup
from .redirect import redirect_to_fake_llm
from .upgrade import UpgradeRequest, apply_upgrade

LONG_EXCHANGES = 62  # every version stores at least user + assistant per exchange: > 120 messages
BIG_BLOCK = "".join(f"fact {i:05d}: the operator keeps this line across upgrades.\n" for i in range(180))
TOOL_SOURCE = '''def roll_die(sides: int) -> str:
    """Roll a die with the given number of sides.

    Args:
        sides (int): How many sides the die has.

    Returns:
        str: The number rolled.
    """
    return str(sides)
'''
ARCHIVAL_TEXT = "an archival passage"
EMPTIED_ARCHIVE = "big-memory"  # its archival memory had a passage, deleted before the upgrade
ARCHIVE_EMBEDDING_BACKFILL = Version("0.13.0")  # migration f6cd5a1e519d: archives get an embedding of their own
SEED_DUMP, SEED_FACTS = "seeded.dump", "seed.json"  # in a seed cache directory; the facts are written last


def seed_incident_agents(client, llm_base_url: str, exchanges: int = LONG_EXCHANGES) -> dict[str, str]:
    """The agents of the incident on ``client``'s server; {name: id}: "AI/ML Expert" and a
    non-ASCII name (both given by PATCH: create refuses them), a history past 120 messages,
    an agent with a custom tool, one with a 10 KB memory block."""
    def renamed(created_as: str, name: str, **fields) -> dict:
        agent = create_agent(client, created_as, llm_base_url, **fields)
        client.patch(f"/v1/agents/{agent['id']}", json={"name": name}).raise_for_status()  # create refuses them
        return agent

    tool = client.post("/v1/tools/", json={"source_code": TOOL_SOURCE, "tags": ["roundtrip"]}).raise_for_status().json()
    agents = {
        "AI/ML Expert": renamed("AI-ML Expert", "AI/ML Expert"),
        "Ágent Zoë 🌟": renamed("Agent Zoe", "Ágent Zoë 🌟"),
        "long-history": create_agent(client, "long-history", llm_base_url),
        "tool-user": create_agent(client, "tool-user", llm_base_url, tool_ids=[tool["id"]]),
        "big-memory": create_agent(client, "big-memory", llm_base_url, memory_blocks=[
            {"label": "human", "value": "The user is an operator."},
            {"label": "persona", "value": "I keep notes."},
            {"label": "notes", "value": BIG_BLOCK, "limit": 20000}]),
    }
    for name in ("AI/ML Expert", "Ágent Zoë 🌟", "tool-user"):
        send_message(client, agents[name]["id"], f"hello {name}")
    for i in range(exchanges):
        send_message(client, agents["long-history"]["id"], f"message {i:03d} of the long history")
    return {name: agent["id"] for name, agent in agents.items()}


def seed_cache_dir(backend: LettaBackend, from_version: str) -> Path:
    """Where a seeded database of ``from_version`` is kept for later runs, named by everything
    that shapes it: the template it starts from (release, alembic head, PostgreSQL or image)
    and the source of the seeding, the REST calls it makes and the fake LLM that answers."""
    from ..provision import fake_llm, fake_llm_replies
    from ..rest import agents

    digest = hashlib.sha256()
    for module in (sys.modules[__name__], agents, fake_llm, fake_llm_replies):
        digest.update(Path(module.__file__).read_bytes())
    template = backend.template_dump(from_version)
    return template.parent / "seeded" / f"{template.stem}-{digest.hexdigest()[:12]}"


def agents_in(backend: LettaBackend, database: str) -> dict[str, tuple[str, int]]:
    """Every live agent: id -> (name, number of messages), read from the database itself."""
    with backend.connect(database) as conn:
        rows = conn.execute("SELECT a.id, a.name, count(m.id) FROM agents a LEFT JOIN messages m ON m.agent_id = a.id "
                            "WHERE NOT a.is_deleted GROUP BY a.id, a.name").fetchall()
    return {agent_id: (name, count) for agent_id, name, count in rows}


def upgrade_stopped(backend: LettaBackend, database: str, from_version: str, to_version: str, backup_dir: Path, *,
                    api_key: str | None = None, progress: Callable[[str], None] = lambda line: None) -> None:
    """Upgrade ``database`` (its server stopped, ``backup_dir`` its backup) as
    ``letta-compat upgrade --apply`` does: migrations, then fix-ups."""
    stopped = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the old server is stopped, as --apply requires
    apply_upgrade(UpgradeRequest(from_version, to_version, backend.dsn(database), stopped, backup_dir, backend.cache,
                                 api_key=api_key), progress=progress)


class UpgradePath:
    """``from_version`` -> ``to_version`` on ``backend``: ``seeded`` and ``upgraded`` (template
    databases: read them, never serve or change them), ``agents`` ({name: id}), ``history``
    ({name: message ids the old server listed}), ``before`` (``agents_in`` the seeded database),
    ``messages_before`` ((id, sequence_id) of every message), ``backup_dir`` (the backup the
    upgrade was gated on), ``password`` (of every server of the path), ``clone(which)``,
    ``old_server()``, ``new_server()``, ``timings``."""

    def __init__(self, backend: LettaBackend, from_version: str, to_version: str, fake: FakeLLM, workdir: Path,
                 start_server: Callable[..., LettaStack] | None = None, name: str | None = None):
        self.backend = backend
        self.start_server = start_server or backend.start_server  # (version, database=, password=)
        self.from_version, self.to_version = from_version, to_version
        self.fake = fake
        self.workdir = Path(workdir)
        self.password = secrets.token_urlsafe(16)
        prefix = backend.unique_name(name or "path", from_version, to_version)  # of its databases' names
        self.seeded, self.upgraded = f"{prefix}_seeded", f"{prefix}_upgraded"
        self._names = (f"{prefix}_{n}" for n in itertools.count(1))
        self.backup_dir = self.workdir / "backup"
        self.agents: dict[str, str] = {}
        self.history: dict[str, list[str]] = {}
        self.before: dict[str, tuple[str, int]] = {}
        self.messages_before: list[tuple[str, int]] = []
        self.timings: dict[str, float] = {}  # seed (old server start included) or seedcache, upgrade
        self._servers: dict[str, LettaStack] = {}

    def build(self, progress: Callable[[str], None] = lambda line: None) -> "UpgradePath":
        started = time.monotonic()
        cached = seed_cache_dir(self.backend, self.from_version)
        with locked(cached):
            if (cached / SEED_FACTS).exists():
                self._restore_seed(cached)
                self.timings["seedcache"] = time.monotonic() - started
            else:
                self._seed(progress)
                self._keep_seed(cached)
                self.timings["seed"] = time.monotonic() - started
        self.before = agents_in(self.backend, self.seeded)
        with self.backend.connect(self.seeded) as conn:
            self.messages_before = conn.execute("SELECT id, sequence_id FROM messages ORDER BY sequence_id").fetchall()

        started = time.monotonic()
        self.backend.copy_database(self.seeded, self.upgraded)
        upgrade_stopped(self.backend, self.upgraded, self.from_version, self.to_version, self.backup_dir,
                        api_key=self.password, progress=progress)
        self.timings["upgrade"] = time.monotonic() - started
        return self

    def _seed(self, progress: Callable[[str], None]) -> None:
        """Seed ``seeded`` through a live old server, and back it up from that server."""
        self.backend.create_database(self.seeded, version=self.from_version)
        seeding = self.start_server(self.from_version, database=self.seeded, password=self.password)
        try:
            with seeding.client() as client:
                self.agents = seed_incident_agents(client, self.fake.base_url)
                for name, agent_id in self.agents.items():
                    listed = client.get(f"/v1/agents/{agent_id}/messages", params={"limit": 1000}).raise_for_status()
                    self.history[name] = [m["id"] for m in listed.json()]
                backup(seeding.url, self.backup_dir, api_key=self.password, dsn=seeding.dsn, progress=progress)
                # archival last: on a fresh 0.16.2 the first request after the first archival insert can hang
                # 60 s in asyncpg's connect and answer 500 (Letta's process loses the socket's epoll registration)
                if Version(self.from_version) < ARCHIVE_EMBEDDING_BACKFILL:
                    empty_archive(client, self.agents[EMPTIED_ARCHIVE])
                insert_passage(client, self.agents["long-history"], ARCHIVAL_TEXT)
        finally:
            seeding.stop()  # the database is copied next: nothing may be connected to it

    def _keep_seed(self, cached: Path) -> None:
        """Keep what ``_seed`` made for later runs: the database's dump, the backup, the ids."""
        with atomic_path(cached) as partial:  # a reader sees all of it or nothing
            partial.mkdir(mode=0o700)
            self.backend.database_server().dump_database(self.seeded, partial / SEED_DUMP)
            shutil.copytree(self.backup_dir, partial / "backup")
            (partial / SEED_FACTS).write_text(json.dumps({"agents": self.agents, "history": self.history}))

    def _restore_seed(self, cached: Path) -> None:
        """``seeded`` and the backup as an earlier run's ``_seed`` left them, pointed at this
        run's fake LLM (the dump names the earlier run's)."""
        facts = json.loads((cached / SEED_FACTS).read_text())
        self.agents, self.history = facts["agents"], facts["history"]
        self.backend.database_server().restore_database(self.seeded, cached / SEED_DUMP)
        with self.backend.connect(self.seeded) as conn:
            redirect_to_fake_llm(conn, self.fake)
        shutil.copytree(cached / "backup", self.backup_dir)

    def clone(self, which: str) -> str:
        """A new database, a copy of ``which`` ("seeded" or "upgraded"); returns its name."""
        name = next(self._names)
        self.backend.copy_database({"seeded": self.seeded, "upgraded": self.upgraded}[which], name)
        return name

    def old_server(self) -> LettaStack:
        """The old release on a copy of the seeded database, started once (shared: read it)."""
        return self._server("seeded", self.from_version)

    def new_server(self) -> LettaStack:
        """The new release on a copy of the upgraded database, started once (shared)."""
        return self._server("upgraded", self.to_version)

    def _server(self, which: str, version: str) -> LettaStack:
        if which not in self._servers:
            self._servers[which] = self.start_server(version, database=self.clone(which),
                                                             password=self.password)
        return self._servers[which]

    def close(self) -> None:
        for stack in self._servers.values():
            self.backend.stop_soon(stack)
        self._servers.clear()
