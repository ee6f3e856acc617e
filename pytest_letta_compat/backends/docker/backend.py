"""The docker backend: pinned letta/letta and pgvector images as containers (testcontainers).

Each session gets a private network, one PostgreSQL+pgvector container and one container
per Letta server, ports published on 127.0.0.1 only, on ephemeral host ports; everything
is labelled (see containers.py) and removed at session end.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from . import images as docker_images

from ... import versions
from ...cache import locked
from ...errors import ProvisioningError, register_secret
from ...matrix.model import PostgresSpec
from ...provision.procs import wait_until
from .. import LettaBackend, LettaStack
from . import relay as tcp_relay
from ...postgres.cluster import PostgresCluster
from .containers import (ContainerLog, ContainerPostgres, docker_client, docker_modules, host_port,
                         labelled_container, remove_labelled, session_labels)

LETTA_PORT = 8283


class DockerStack(LettaStack):
    """A Letta server container on the session's network."""

    def __init__(self, *, version: str, image: str, database: str, password: str | None, dsn: str,
                 container, log: ContainerLog, postgres: PostgresCluster | None = None):
        self.version, self.image, self.database, self.password = version, image, database, password
        self.container = container
        self._dsn = dsn
        self._postgres = postgres
        self._log = log
        self.log_path = log.path
        self.port = host_port(container, LETTA_PORT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.started_in: float | None = None

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def pid(self) -> int | None:
        """The server's process id on the host (the container's first process), as for
        native stacks: killing it kills the container."""
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - removed
            return None
        return self.container.attrs["State"].get("Pid") or None

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)

    def log_tail(self, lines: int = 200) -> str:
        return self._log.tail(lines)

    def running(self) -> bool:
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - removed
            return False
        return self.container.status == "running"

    def wait_healthy(self, timeout: float) -> float:
        def healthy() -> bool:
            if not self.running():
                code = self.container.attrs.get("State", {}).get("ExitCode")
                raise ProvisioningError(
                    f"The Letta {self.version} container ({self.image}) exited with code {code} before it "
                    f"became healthy. Last lines of its log ({self.log_path}):\n{self.log_tail(40)}")
            return httpx.get(f"{self.url}/v1/health/", timeout=5).status_code == 200

        try:
            self.started_in = wait_until(f"Letta {self.version} ({self.image}) to report healthy on "
                                         f"{self.url}/v1/health/", healthy, timeout=timeout, interval=0.5)
        except ProvisioningError as exc:
            if "exited with code" in str(exc):
                raise
            raise ProvisioningError(f"{exc} Last lines of its log ({self.log_path}):\n{self.log_tail(40)}") from None
        return self.started_in

    def stop(self) -> None:
        try:
            self.container.stop(timeout=20)
            self.container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._log.join()


class DockerBackend(LettaBackend):
    name = "docker"

    def __init__(self, *, postgres: PostgresSpec | None = None, cache: Path, workdir: Path | None = None,
                 llm_env: dict[str, str] | None = None, start_timeout: float = 300,
                 redis_binary: str | None = None, compose: str | os.PathLike | None = None):
        del redis_binary  # each Letta container runs its image's own Redis, as the official one does
        self.postgres_spec = postgres or PostgresSpec()
        self.cache = Path(cache)
        self.workdir = Path(workdir) if workdir else Path(os.environ.get("TMPDIR", "/tmp")) / f"letta-compat-docker-{os.getpid()}"
        self.llm_env = dict(llm_env or {})
        self.start_timeout = start_timeout
        self.compose_path = Path(compose) if compose else None
        self.session = uuid.uuid4().hex[:12]
        self.labels = session_labels(self.session)
        self.client = None
        self.network = None
        self.postgres: ContainerPostgres | None = None
        self.compose = None
        self.stacks: list[LettaStack] = []
        self.timings: dict[str, float] = {}
        self.images: dict[str, str] = {}  # wanted image -> the local image used for it
        self.first_healthy_at: float | None = None
        self._relays: list[tcp_relay.TcpRelay] = []
        self._loopback_ports: dict[int, tuple[str, int]] = {}  # host loopback port -> (relay host, port)
        self._container_llm_env: dict[str, str] = {}
        self._templates: dict[str, str] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "DockerBackend":
        _, _, _, Network = docker_modules()
        self.client = docker_client()
        self.workdir.mkdir(parents=True, exist_ok=True)
        swept = remove_labelled(self.client)
        if swept:
            self.timings["leftovers_removed"] = swept
        atexit.register(self.stop)
        self.network = Network(docker_network_kw={"labels": self.labels}).create()
        self._bridge_loopback_urls()
        image = self.resolve(self.postgres_spec.image, docker_images.pgvector_standin(self.postgres_spec.image),
                             "postgres.image")
        self.postgres = ContainerPostgres(image, network=self.network, labels=self.labels,
                                          log_path=self.workdir / "postgres.log", start_timeout=self.start_timeout,
                                          name=f"letta-compat-{self.session}-postgres")
        self.postgres.start()
        self.timings["postgres_start"] = self.postgres.started_in
        if self.compose_path is not None:
            from .compose_stack import ComposeProject

            self.compose = ComposeProject(self)
        return self

    def stop(self) -> None:
        if self._stopped or self.client is None:
            return
        self._stopped = True
        for stack in reversed(self.stacks):
            stack.stop()
        if self.compose is not None:
            self.compose.down()
        if self.postgres is not None:
            self.postgres.cleanup()
        for relay in self._relays:
            relay.stop()
        if self.network is not None:
            try:
                self.network.remove()
            except Exception:  # noqa: BLE001 - removed below with everything else labelled
                pass
        remove_labelled(self.client, session=self.session)

    cleanup = stop

    def resolve(self, wanted: str, standin: str | None, key: str) -> str:
        """The local image to run for ``wanted`` (see docker_images.resolve_image)."""
        if wanted not in self.images:
            self.images[wanted] = docker_images.resolve_image(self.client, wanted, standin, key)
        return self.images[wanted]

    def letta_image(self, version: str) -> str:
        if versions.server_release(version) is None:
            raise ProvisioningError(f"Letta server version {version!r} is not one this plugin knows. Allowed: "
                                    + ", ".join(versions.known_server_versions()) + ".")
        return self.resolve(docker_images.official_letta(version), docker_images.local_letta(version),
                            f"Letta {version}")

    def _bridge_loopback_urls(self) -> None:
        """Containers cannot reach the host's 127.0.0.1: relay each loopback URL of the LLM
        environment through the Docker bridge's gateway address."""
        gateway = self._gateway()
        for key, value in self.llm_env.items():
            parts = urlsplit(value) if "://" in value else None
            if parts is None or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
                self._container_llm_env[key] = value
                continue
            if parts.port not in self._loopback_ports:
                relay = tcp_relay.TcpRelay(gateway, 0, "127.0.0.1", parts.port).start()
                self._relays.append(relay)
                self._loopback_ports[parts.port] = (gateway, relay.port)
            host, port = self._loopback_ports[parts.port]
            self._container_llm_env[key] = urlunsplit(parts._replace(netloc=f"{host}:{port}"))

    def _gateway(self) -> str:
        for name in ("bridge", self.network.name):
            try:
                config = self.client.networks.get(name).attrs["IPAM"]["Config"]
                gateway = next(c["Gateway"] for c in config if c.get("Gateway") and ":" not in c["Gateway"])
                return gateway
            except Exception:  # noqa: BLE001 - try the next network
                continue
        raise ProvisioningError("Cannot tell the Docker bridge's gateway address: containers would not reach "
                                "the fake LLM on the host.")

    def container_env(self) -> dict[str, str]:
        """The LLM environment with loopback URLs rewritten for containers."""
        return dict(self._container_llm_env)

    def start_loopback_forwarders(self, container) -> None:
        """Inside a Letta container, listen on 127.0.0.1:<port> for each relayed host port, so
        URLs that tests pass to agents (the fake LLM's 127.0.0.1 URL) work there too."""
        source = Path(tcp_relay.__file__).read_text()
        for loopback_port, (host, port) in self._loopback_ports.items():
            container.exec_run(["sh", "-c", 'exec "$(command -v python3 || command -v python)" -c "$0" "$@"',
                                source, "127.0.0.1", str(loopback_port), host, str(port)], detach=True)

    def _need_postgres(self) -> ContainerPostgres:
        if self.postgres is None:
            raise ProvisioningError("The docker backend's PostgreSQL is not running (start() first).")
        return self.postgres

    # -- databases -------------------------------------------------------------------------
    def dsn(self, database: str) -> str:
        return self._need_postgres().dsn(database)

    def connect(self, database: str) -> psycopg.Connection:
        return self._need_postgres().connect(database)

    def create_database(self, name: str, *, version: str | None = None) -> str:
        template = self.template(version) if version else None
        return self._need_postgres().create_database(name, template=template)

    def drop_database(self, name: str) -> None:
        self._need_postgres().drop_database(name)

    def template(self, version: str) -> str:
        """A template database at ``version``'s head, migrated once per session by the
        version's image (or restored from the dump an earlier run cached for that image)."""
        with self._lock:
            if version not in self._templates:
                pg = self._need_postgres()
                image = self.letta_image(version)
                name = "tmpl_" + version.replace(".", "_")
                image_id = self.client.images.get(image).id.split(":")[-1][:16]
                dump = self.cache / "templates" / "docker" / f"{version}-{image_id}-{pg.image.replace('/', '_')}.dump"
                started = time.monotonic()
                if dump.exists():
                    pg.restore_database(name, dump)
                    self.timings[f"template_{version}"] = time.monotonic() - started
                else:
                    pg.create_database(name)
                    self.timings[f"migrate_{version}"] = self._run_migration(image, name)
                    with locked(dump):
                        partial = dump.with_suffix(f".{os.getpid()}.partial")
                        dump.parent.mkdir(parents=True, exist_ok=True)
                        pg.dump_database(name, partial)
                        partial.replace(dump)
                pg.mark_template(name)
                self._templates[version] = name
            return self._templates[version]

    def migrate(self, database: str, version: str) -> float:
        return self._run_migration(self.letta_image(version), database)

    def _run_migration(self, image: str, database: str) -> float:
        """The image's own start-up migration step, in a one-off container."""
        entrypoint = docker_images.migrate_entrypoint(self.client, image)
        log_path = self.workdir / f"migrate-{database}.log"
        tc = labelled_container(image, labels=self.labels, network=self.network, entrypoint=entrypoint,
                        env={"LETTA_PG_URI": self._need_postgres().network_dsn(database)})
        started = time.monotonic()
        tc.start()
        container = tc.get_wrapped_container()
        log = ContainerLog(container, log_path)
        try:
            status = container.wait(timeout=max(self.start_timeout, 900)).get("StatusCode")
        except Exception:  # noqa: BLE001 - requests' ReadTimeout
            status = None
        log.join(10)
        try:
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if status != 0:
            what = "did not finish in time" if status is None else f"failed (exit {status})"
            raise ProvisioningError(f"The migration step of {image} ({' '.join(entrypoint)}) {what} on database "
                                    f"{database}. Last lines of its log ({log_path}):\n{log.tail(25)}")
        return time.monotonic() - started

    def unique_name(self, version: str) -> str:
        return f"letta_{version.replace('.', '_')}_{next(self._counter)}"

    # -- servers ---------------------------------------------------------------------------
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None) -> LettaStack:
        if self.compose is not None and self.compose.serves(version, database, secure, password):
            return self.compose.stack()
        image = self.letta_image(version)
        if database is None:
            database = self.unique_name(version)
            self.create_database(database, version=version)
        secure = secure or password is not None
        password = password or (secrets.token_urlsafe(18) if secure else None)
        register_secret(password)
        pg = self._need_postgres()
        env = {"LETTA_PG_URI": pg.network_dsn(database), **self.container_env()}
        if secure:
            env.update(SECURE="true", LETTA_SERVER_PASSWORD=password)
        n = next(self._counter)
        tc = labelled_container(image, labels=self.labels, network=self.network, env=env, publish=LETTA_PORT,
                        name=f"letta-compat-{self.session}-{database}-{n}".replace("_", "-"))
        tc.start()
        container = tc.get_wrapped_container()
        self.start_loopback_forwarders(container)
        log = ContainerLog(container, self.workdir / f"{database}-{n}" / "letta-server.log")
        stack = DockerStack(version=version, image=image, database=database, password=password,
                            dsn=pg.dsn(database), container=container, log=log, postgres=pg)
        with self._lock:
            self.stacks.append(stack)
        try:
            stack.wait_healthy(self.start_timeout)
        except BaseException:
            stack.stop()
            raise
        if self.first_healthy_at is None:
            self.first_healthy_at = time.monotonic()
        return stack
