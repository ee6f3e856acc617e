"""The native backend: Letta servers as plain processes, PostgreSQL+pgvector from pip."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from .. import versions
from ..errors import ProvisioningError
from ..cache import locked
from ..provision.install import ensure_server
from ..matrix.model import PostgresSpec
from ..provision.alembic import upgrade_to_release
from ..postgres.cluster import PostgresBinaries, PostgresCluster
from ..provision.redis import RedisServer
from ..provision.server import LettaServerProcess
from . import LettaBackend, LettaStack


class NativeStack(LettaStack):
    def __init__(self, backend: "NativeBackend", server: LettaServerProcess, redis: RedisServer, database: str):
        self._backend = backend
        self._server = server
        self._redis = redis
        self.version = server.version
        self.database = database
        self.password = server.password
        self.log_path = server.log_path
        self.workdir = server.workdir

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def started_in(self) -> float | None:
        return self._server.started_in

    @property
    def redis_port(self) -> int | None:
        return self._redis.port

    @property
    def pid(self) -> int | None:
        return self._server.process.pid if self._server.process else None

    @property
    def dsn(self) -> str:
        return self._backend.dsn(self.database)

    def connect(self) -> psycopg.Connection:
        return self._backend.connect(self.database)

    def log_tail(self, lines: int = 200) -> str:
        return self._server.log_tail(lines)

    def running(self) -> bool:
        return self._server.process is not None and self._server.process.running()

    def stop(self) -> None:
        self._server.stop()
        self._redis.stop()


class NativeBackend(LettaBackend):
    name = "native"

    def __init__(self, *, postgres: PostgresSpec | None = None, cache: Path, workdir: Path | None = None,
                 llm_env: dict[str, str] | None = None, start_timeout: float = 300,
                 redis_binary: str | None = None):
        self.postgres_spec = postgres or PostgresSpec()
        self.cache = Path(cache)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="letta-compat-"))
        self.llm_env = dict(llm_env or {})
        self.start_timeout = start_timeout
        self.redis_binary = redis_binary
        self.cluster: PostgresCluster | None = None
        self.stacks: list[NativeStack] = []
        self.timings: dict[str, float] = {}
        self.first_healthy_at: float | None = None  # time.monotonic() of the first healthy server
        self._templates: dict[str, str] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "NativeBackend":
        spec = self.postgres_spec
        binaries = PostgresBinaries.system(spec.bin_dir) if spec.bin_dir else PostgresBinaries.embedded(spec.version)
        if binaries.major < versions.POSTGRES_MIN_MAJOR:
            raise ProvisioningError(
                f"PostgreSQL {binaries.major} in {binaries.bin_dir} is too old: Letta's migrations "
                f"need {versions.POSTGRES_MIN_MAJOR} or newer.")
        self.cluster = PostgresCluster(binaries, start_timeout=self.start_timeout).start()
        self.timings["postgres_start"] = self.cluster.started_in
        return self

    def stop(self) -> None:
        for stack in reversed(self.stacks):
            stack.stop()
        if self.cluster is not None:
            self.cluster.cleanup()
            self.cluster = None

    def _need_cluster(self) -> PostgresCluster:
        if self.cluster is None:
            raise ProvisioningError("The native backend's PostgreSQL is not running (start() first).")
        return self.cluster

    # -- databases -------------------------------------------------------------------------
    def dsn(self, database: str) -> str:
        return self._need_cluster().dsn(database)

    def connect(self, database: str) -> psycopg.Connection:
        return self._need_cluster().connect(database)

    def template(self, version: str) -> str:
        """The name of a template database at ``version``'s alembic head, built once per
        session: restored from the cached dump of an earlier run, or migrated and dumped."""
        with self._lock:
            if version not in self._templates:
                cluster = self._need_cluster()
                name = "tmpl_" + version.replace(".", "_")
                head = versions.server_release(version).alembic_head
                dump = (self.cache / "templates" / f"pg{cluster.binaries.major}"
                        / f"{version}-{head}-{versions.MIGRATIONS_SDIST_SHA256[:12]}.dump")
                started = time.monotonic()
                if dump.exists():
                    cluster.restore_database(name, dump)
                    self.timings[f"template_{version}"] = time.monotonic() - started
                else:
                    self._install(versions.MIGRATIONS_SOURCE)
                    dsn = cluster.create_database(name)
                    self.timings[f"migrate_{version}"] = upgrade_to_release(
                        dsn, version, self.cache, log_path=self.workdir / f"migrate-{name}.log")
                    with locked(dump):
                        partial = dump.with_suffix(f".{os.getpid()}.partial")
                        dump.parent.mkdir(parents=True, exist_ok=True)
                        cluster.dump_database(name, partial)
                        partial.replace(dump)  # atomic: readers never see half a dump
                cluster.mark_template(name)
                self._templates[version] = name
            return self._templates[version]

    def _install(self, version: str):
        install = ensure_server(version, self.cache)
        self.timings.setdefault(f"install_{version}", install.installed_in)
        return install

    def create_database(self, name: str, *, version: str | None = None) -> str:
        template = self.template(version) if version else None
        return self._need_cluster().create_database(name, template=template)

    def drop_database(self, name: str) -> None:
        self._need_cluster().drop_database(name)

    def migrate(self, database: str, version: str) -> float:
        self._install(versions.MIGRATIONS_SOURCE)
        return upgrade_to_release(self.dsn(database), version, self.cache,
                                  log_path=self.workdir / f"migrate-{database}.log")

    def unique_name(self, version: str) -> str:
        return f"letta_{version.replace('.', '_')}_{next(self._counter)}"

    # -- servers ---------------------------------------------------------------------------
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None) -> NativeStack:
        install = self._install(version)
        if database is None:
            database = self.unique_name(version)
            self.create_database(database, version=version)
        workdir = self.workdir / f"{database}-{next(self._counter)}"
        redis = RedisServer(workdir / "redis", binary=self.redis_binary)
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        redis.start()
        server = LettaServerProcess(install, self.dsn(database), workdir, redis=(redis.host, redis.port),
                                    llm_env=self.llm_env, password=password, secure=secure,
                                    start_timeout=self.start_timeout)
        stack = NativeStack(self, server, redis, database)
        with self._lock:
            self.stacks.append(stack)
        try:
            server.start()
        except BaseException:
            stack.stop()
            raise
        if self.first_healthy_at is None:
            self.first_healthy_at = time.monotonic()
        return stack

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
