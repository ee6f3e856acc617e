"""The native backend: Letta servers as plain processes, PostgreSQL+pgvector from pip."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psycopg

from .. import versions
from ..errors import ProvisioningError
from ..matrix.model import PostgresSpec
from ..postgres.binaries import PostgresBinaries
from ..postgres.cluster import PostgresCluster
from ..provision.alembic import upgrade_to_release
from ..provision.install import ServerInstall, ensure_server, server_installed
from ..provision.redis import RedisServer
from ..provision.server import LettaServerProcess
from .base import LettaBackend, LettaStack


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
        self._own_workdir = workdir is None
        super().__init__(postgres=postgres, cache=cache, llm_env=llm_env, start_timeout=start_timeout,
                         workdir=workdir or Path(tempfile.mkdtemp(prefix="letta-compat-")))
        self.redis_binary = redis_binary
        self.cluster: PostgresCluster | None = None

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
        self.wait_for_stops()
        for stack in reversed(self.stacks):
            stack.stop()
        if self.cluster is not None:
            self.cluster.cleanup()
            self.cluster = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------
    def database_server(self) -> PostgresCluster:
        if self.cluster is None:
            raise ProvisioningError("The native backend's PostgreSQL is not running (start() first).")
        return self.cluster

    def template_dump(self, version: str) -> Path:
        head = versions.server_release(version).alembic_head  # a known version: template() checked
        return (self.cache / "templates" / f"pg{self.database_server().binaries.major}"
                / f"{version}-{head}-{versions.MIGRATIONS_SDIST_SHA256[:12]}.dump")

    def _install(self, version: str) -> ServerInstall:
        install = ensure_server(version, self.cache)
        self.timings.setdefault(f"install_{version}", install.installed_in)
        return install

    def migrate(self, database: str, version: str) -> float:
        self._install(versions.MIGRATIONS_SOURCE)
        return upgrade_to_release(self.dsn(database), version, self.cache,
                                  log_path=self.workdir / f"migrate-{database}.log")

    def prepare(self, versions: list[str]) -> None:
        for version in versions:
            self._install(version)

    def prepared(self, version: str) -> bool:
        return server_installed(version, self.cache)

    # -- servers ---------------------------------------------------------------------------
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None, env: Mapping[str, str] | None = None) -> NativeStack:
        install = self._install(version)
        if database is None:
            database = self.unique_name("letta", version)
            self.create_database(database, version=version)
        workdir = self.workdir / f"{database}-{next(self._counter)}"
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        redis = RedisServer(workdir / "redis", binary=self.redis_binary)
        redis.start()
        server = LettaServerProcess(install, self.dsn(database), workdir, redis=(redis.host, redis.port),
                                    llm_env={**self.llm_env, **(env or {})}, password=password, secure=secure,
                                    start_timeout=self.start_timeout)
        stack = NativeStack(self, server, redis, database)
        self.track(stack, server.start)
        return stack
