"""The whole interface of "a running Letta stack" and of the backends that start them, with
what every backend shares: the template-database cache, database plumbing, bookkeeping.

A backend owns one PostgreSQL+pgvector (``database_server()``: the native cluster or its
container twin, both ``postgres.cluster.PostgresCluster``) and every server it started. The
plugin and the CLI use only what is declared here.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import psycopg

from .. import versions
from ..cache import locked
from ..errors import ProvisioningError
from ..paths import atomic_path
from ..matrix.model import PostgresSpec
from ..postgres.cluster import PostgresCluster


class LettaStack(ABC):
    """A running Letta server with its PostgreSQL database (and Redis beside it)."""

    version: str
    url: str
    database: str  # name of the database the server uses
    password: str | None
    log_path: Path
    started_in: float | None  # seconds from process start to healthy
    pid: int | None  # the server's process id on this host (killing it kills the server)

    @property
    @abstractmethod
    def dsn(self) -> str:
        """Letta's DSN for its database (holds a password: never print it)."""

    @abstractmethod
    def connect(self) -> psycopg.Connection:
        """An autocommit connection to the server's database."""

    @abstractmethod
    def log_tail(self, lines: int = 200) -> str:
        """The last lines of the server's log, secrets masked."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server (the database stays)."""

    @abstractmethod
    def running(self) -> bool: ...

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client bound to the server, authenticated when it runs in secure mode."""
        kwargs.setdefault("timeout", 120)
        auth = {"Authorization": f"Bearer {self.password}"} if self.password else {}
        return httpx.Client(base_url=self.url, headers={**auth, **kwargs.pop("headers", {})}, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} Letta {self.version} at {self.url}>"


class LettaBackend(ABC):
    """Starts PostgreSQL and Letta servers; owns every database and server it made."""

    name: str

    def __init__(self, *, postgres: PostgresSpec | None, cache: Path, workdir: Path, llm_env: dict[str, str] | None,
                 start_timeout: float):
        self.postgres_spec = postgres or PostgresSpec()
        self.cache = Path(cache)  # installs, migration scripts and template dumps, shared by runs
        self.workdir = Path(workdir)  # logs and server directories of this session
        self.llm_env = dict(llm_env or {})
        self.start_timeout = start_timeout
        self.stacks: list[LettaStack] = []  # every server started, in order
        self.timings: dict[str, float] = {}  # postgres_start, install_<v>, migrate_<v>, template_<v>
        self.copy_times: list[float] = []  # seconds of each database copied from a template
        self.first_healthy_at: float | None = None  # time.monotonic() of the first healthy server
        self._templates: dict[str, str] = {}
        self._stopping: list[threading.Thread] = []  # stops nobody waits for (stop_soon)
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._run = secrets.token_hex(3)  # in every unique_name: a database cluster may outlive a run

    # -- what each backend does its own way ---------------------------------------------------
    @abstractmethod
    def start(self) -> "LettaBackend": ...

    @abstractmethod
    def stop(self) -> None:
        """Stop every server, then PostgreSQL."""

    @abstractmethod
    def database_server(self) -> PostgresCluster:
        """The running PostgreSQL (ProvisioningError before ``start()``)."""

    @abstractmethod
    def template_dump(self, version: str) -> Path:
        """Where the ``pg_dump`` of ``version``'s template is cached, named by everything
        that shapes it (so a changed image or migration source never reuses a stale one)."""

    @abstractmethod
    def migrate(self, database: str, version: str) -> float:
        """Upgrade ``database`` in place to ``version``'s alembic head; returns seconds."""

    @abstractmethod
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None, env: Mapping[str, str] | None = None) -> LettaStack:
        """Start Letta ``version`` on ``database`` (default: a fresh copy of its template).
        ``env``: this server's environment beyond the LLM environment (e.g. ``OLLAMA_BASE_URL``);
        its loopback URLs reach the host as those of the LLM environment do."""

    def prepare(self, versions: list[str]) -> None:
        """Make sure ``start_server`` has what each of ``versions`` needs (native: its install;
        docker: its image), before anything is started on it: a missing one fails here."""

    def prepared(self, version: str) -> bool:
        """Whether ``prepare([version])`` has nothing left to do, told cheaply (no lock, no
        network): the plugin prepares ahead only what is not. A backend that cannot tell says
        True (docker: a pull in the background would move its warnings to whatever test runs)."""
        return True

    def cleanup(self) -> None:
        """``stop()``, and remove what the session left on disk."""
        self.stop()

    # -- databases ---------------------------------------------------------------------------
    def dsn(self, database: str) -> str:
        return self.database_server().dsn(database)

    def connect(self, database: str) -> psycopg.Connection:
        return self.database_server().connect(database)

    def create_database(self, name: str, *, version: str | None = None) -> str:
        """A new database; with ``version``, a copy of that version's migrated template.
        Without it, an empty database laid out as Letta's init.sql does. Returns its DSN."""
        if not version:
            return self.database_server().create_database(name)
        return self.copy_database(self.template(version), name)

    def copy_database(self, source: str, name: str) -> str:
        """A new database ``name``, a copy of ``source`` (``CREATE DATABASE ... TEMPLATE``,
        about 0.04 s; nothing may be connected to ``source``). Returns its DSN."""
        started = time.monotonic()
        dsn = self.database_server().create_database(name, template=source)
        self.copy_times.append(time.monotonic() - started)
        return dsn

    def drop_database(self, name: str) -> None:
        self.database_server().drop_database(name)

    def unique_name(self, *parts: str) -> str:
        """A database or directory name no other path, entry or run uses: ``parts`` (dots become
        underscores, e.g. ``("handfix", "0.12.1", "0.16.8")``), this run's token and a counter."""
        return "_".join([p.replace(".", "_") for p in parts] + [self._run, str(next(self._counter))])

    def template(self, version: str) -> str:
        """The name of a template database at ``version``'s alembic head, built once per
        session: restored from the dump an earlier run cached, or migrated and dumped."""
        with self._lock:
            if version not in self._templates:
                versions.require_server_release(version, error=ProvisioningError)
                server = self.database_server()
                name = "tmpl_" + version.replace(".", "_")
                dump = self.template_dump(version)
                started = time.monotonic()
                if dump.exists():
                    server.restore_database(name, dump)
                    self.timings[f"template_{version}"] = time.monotonic() - started
                else:
                    server.create_database(name)
                    self.timings[f"migrate_{version}"] = self.migrate(name, version)
                    with locked(dump):
                        with atomic_path(dump) as partial:  # readers never see half a dump
                            server.dump_database(name, partial)
                server.mark_template(name)
                self._templates[version] = name
            return self._templates[version]

    # -- servers -----------------------------------------------------------------------------
    def stop_soon(self, stack: LettaStack) -> None:
        """Stop ``stack`` in the background: a Letta server takes seconds to shut down, and
        nothing waits for it unless its database is used next (then call ``stack.stop()``).
        ``stop()`` of the backend waits for every such stop before stopping PostgreSQL."""
        thread = threading.Thread(target=stack.stop, name=f"stop {stack!r}", daemon=True)
        with self._lock:
            self._stopping.append(thread)
        thread.start()

    def wait_for_stops(self) -> None:
        """Wait until every ``stop_soon`` is done (backends call it first in ``stop()``)."""
        with self._lock:
            stopping, self._stopping = self._stopping, []
        for thread in stopping:
            thread.join()

    def track(self, stack: LettaStack, wait_healthy: Callable[[], object]) -> LettaStack:
        """Own ``stack`` (stopped with the backend), wait until it is healthy, and note the
        session's first healthy server; a stack that never gets healthy is stopped."""
        with self._lock:
            self.stacks.append(stack)
        try:
            wait_healthy()
        except BaseException:
            stack.stop()
            raise
        if self.first_healthy_at is None:
            self.first_healthy_at = time.monotonic()
        return stack
