"""The docker backend: pinned letta/letta and pgvector images as containers (testcontainers).

Each session gets a private network, one PostgreSQL+pgvector container and one container
per Letta server, ports published on 127.0.0.1 only, on ephemeral host ports; everything
is labelled (see containers.py) and removed at session end.
"""

from __future__ import annotations

import atexit
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ... import versions
from ...errors import ProvisioningError, register_secret
from ...matrix.model import PostgresSpec
from ..base import LettaBackend, LettaStack
from . import images as docker_images
from . import relay as tcp_relay
from .compose_stack import ComposeProject
from .containers import (ContainerLog, ContainerPostgres, docker_client, docker_modules, labelled_container,
                         remove_labelled, session_labels)
from .stack import LETTA_PORT, DockerStack


class DockerBackend(LettaBackend):
    name = "docker"

    def __init__(self, *, postgres: PostgresSpec | None = None, cache: Path, workdir: Path | None = None,
                 llm_env: dict[str, str] | None = None, start_timeout: float = 300,
                 redis_binary: str | None = None, compose: str | os.PathLike | None = None):
        del redis_binary  # each Letta container runs its image's own Redis, as the official one does
        super().__init__(postgres=postgres, cache=cache, llm_env=llm_env, start_timeout=start_timeout,
                         workdir=Path(workdir) if workdir else
                         Path(os.environ.get("TMPDIR", "/tmp")) / f"letta-compat-docker-{os.getpid()}")
        self.compose_path = Path(compose) if compose else None
        self.session = uuid.uuid4().hex[:12]
        self.labels = session_labels(self.session)
        self.client = None
        self.network = None
        self.postgres: ContainerPostgres | None = None
        self.compose: ComposeProject | None = None
        self.images: dict[str, str] = {}  # wanted image -> the local image used for it
        self._relays: list[tcp_relay.TcpRelay] = []
        self._loopback_ports: dict[int, tuple[str, int]] = {}  # host loopback port -> (relay host, port)
        self._container_llm_env: dict[str, str] = {}
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
            self.compose = ComposeProject(self)
        return self

    def stop(self) -> None:
        if self._stopped or self.client is None:
            return
        self._stopped = True
        self.wait_for_stops()
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

    def resolve(self, wanted: str, standin: str | None, key: str) -> str:
        """The local image to run for ``wanted`` (see docker_images.resolve_image)."""
        if wanted not in self.images:
            self.images[wanted] = docker_images.resolve_image(self.client, wanted, standin, key)
        return self.images[wanted]

    def letta_image(self, version: str) -> str:
        versions.require_server_release(version, error=ProvisioningError)
        return self.resolve(docker_images.official_letta(version), docker_images.local_letta(version),
                            f"Letta {version}")

    def _bridge_loopback_urls(self) -> None:
        """Containers cannot reach the host's 127.0.0.1: relay each loopback URL of the LLM
        environment through the Docker bridge's gateway address."""
        for key, value in self.llm_env.items():
            self._container_llm_env[key] = self._relay_loopback(value)

    def _relay_loopback(self, value: str) -> str:
        """``value`` as a container reaches it: a loopback URL through a relay on the bridge's
        gateway (one per port, kept until the backend stops), anything else unchanged."""
        parts = urlsplit(value) if "://" in value else None
        if parts is None or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
            return value
        if parts.port not in self._loopback_ports:
            gateway = self._gateway()
            relay = tcp_relay.TcpRelay(gateway, 0, "127.0.0.1", parts.port).start()
            self._relays.append(relay)
            self._loopback_ports[parts.port] = (gateway, relay.port)
        host, port = self._loopback_ports[parts.port]
        return urlunsplit(parts._replace(netloc=f"{host}:{port}"))

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

    # -- databases -------------------------------------------------------------------------
    def database_server(self) -> ContainerPostgres:
        if self.postgres is None:
            raise ProvisioningError("The docker backend's PostgreSQL is not running (start() first).")
        return self.postgres

    def template_dump(self, version: str) -> Path:
        """Keyed by the image that migrated it and the PostgreSQL image it lives in."""
        image_id = self.client.images.get(self.letta_image(version)).id.split(":")[-1][:16]
        pg_image = self.database_server().image.replace("/", "_")
        return self.cache / "templates" / "docker" / f"{version}-{image_id}-{pg_image}.dump"

    def migrate(self, database: str, version: str) -> float:
        """The image's own start-up migration step, in a one-off container."""
        image = self.letta_image(version)
        entrypoint = docker_images.migrate_entrypoint(self.client, image)
        log_path = self.workdir / f"migrate-{database}.log"
        tc = labelled_container(image, labels=self.labels, network=self.network, entrypoint=entrypoint,
                        env={"LETTA_PG_URI": self.database_server().network_dsn(database)})
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

    def prepare(self, versions: list[str]) -> None:
        for version in versions:
            self.letta_image(version)

    # -- servers ---------------------------------------------------------------------------
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None, env: Mapping[str, str] | None = None) -> LettaStack:
        if self.compose is not None and not env and self.compose.serves(version, database, secure, password):
            return self.compose.stack()
        image = self.letta_image(version)
        if database is None:
            database = self.unique_name("letta", version)
            self.create_database(database, version=version)
        secure = secure or password is not None
        password = password or (secrets.token_urlsafe(18) if secure else None)
        register_secret(password)
        pg = self.database_server()
        extra = {key: self._relay_loopback(value) for key, value in (env or {}).items()}
        env = {"LETTA_PG_URI": pg.network_dsn(database), **self.container_env(), **extra}
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
                            dsn=pg.dsn(database), container=container, log=log)
        return self.track(stack, lambda: stack.wait_healthy(self.start_timeout))
