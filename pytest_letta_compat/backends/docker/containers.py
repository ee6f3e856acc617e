"""Containers for the docker backend: labels and the sweep of leftovers, testcontainers
helpers, log followers, and PostgreSQL+pgvector in a container.

Every container, network and volume carries the session and owner labels below. A session
removes its own at the end; whatever a crashed run left behind (its owner process is gone)
is removed when the next session starts. Ryuk, testcontainers' own reaper, is not used: its
image cannot be pulled on registry-less machines.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import tarfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import psycopg  # noqa: E402

from ...errors import ProvisioningError, StartTimedOut, StoppedDuringStart, redact, register_secret  # noqa: E402
from ...postgres.cluster import PostgresCluster  # noqa: E402
from ...provision.procs import log_stamp, wait_until  # noqa: E402

SESSION_LABEL = "org.letta-compat.session"
OWNER_PID_LABEL = "org.letta-compat.owner-pid"
OWNER_START_LABEL = "org.letta-compat.owner-start"  # guards against a reused pid
OWNER_HOST_LABEL = "org.letta-compat.owner-host"  # pids mean something on this host only


def docker_modules():
    try:
        import docker.errors
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.docker_client import DockerClient
        from testcontainers.core.network import Network
    except ImportError:
        raise ProvisioningError(
            "The docker backend needs testcontainers: pip install 'pytest-letta-compat[docker]'.") from None
    return docker.errors, DockerContainer, DockerClient, Network


def docker_client():
    """A docker-py client for $DOCKER_HOST (or the default socket), checked to answer."""
    errors, _, DockerClient, _ = docker_modules()
    try:
        client = DockerClient().client
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker-py raises several unrelated types here
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise ProvisioningError(
            f"No Docker engine answers at {where} ({type(exc).__name__}: {exc}). Start one "
            "(.ci/docker-setup.sh prints the DOCKER_HOST to export) or use the native backend (pytest: "
            "--letta-backend native; letta-compat rehearse: --backend native).") from None
    return client


def _process_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def session_labels(session: str) -> dict[str, str]:
    pid = os.getpid()
    return {SESSION_LABEL: session, OWNER_PID_LABEL: str(pid), OWNER_START_LABEL: _process_start(pid) or "",
            OWNER_HOST_LABEL: socket.gethostname()}


def _owner_gone(labels: dict[str, str]) -> bool:
    if labels.get(OWNER_HOST_LABEL) != socket.gethostname():
        return False  # another machine's run: not ours to judge
    try:
        pid = int(labels.get(OWNER_PID_LABEL, ""))
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return bool(labels.get(OWNER_START_LABEL)) and _process_start(pid) != labels[OWNER_START_LABEL]


def remove_labelled(client, *, session: str | None = None) -> int:
    """Remove the containers, networks and volumes of ``session``, or (None) of every
    session whose owner process is gone. Returns how many objects were removed."""
    errors = docker_modules()[0]
    match = {"label": f"{SESSION_LABEL}={session}" if session else SESSION_LABEL}
    removed = 0
    for kind in ("containers", "networks", "volumes"):
        collection = getattr(client, kind)
        found = collection.list(all=True, filters=match) if kind == "containers" else collection.list(filters=match)
        for obj in found:
            labels = (obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels")) or {}
            if session is None and not _owner_gone(labels):
                continue
            try:
                obj.remove(force=True, v=True) if kind == "containers" else obj.remove()
                removed += 1
            except errors.NotFound:
                pass
    return removed


def host_port(container, port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    if not bindings:
        raise ProvisioningError(f"Container {container.name} publishes no host port for {port}.")
    return int(bindings[0]["HostPort"])


def labelled_container(image: str, *, labels: dict[str, str], network=None, alias: str | None = None,
               env: dict[str, str] | None = None, publish: int | None = None, **kwargs):
    """A testcontainers DockerContainer, labelled, on ``network``, ``publish`` bound to 127.0.0.1."""
    _, DockerContainer, _, _ = docker_modules()
    c = DockerContainer(image)
    if "name" in kwargs:
        c.with_name(kwargs.pop("name"))
    for key, value in (env or {}).items():
        c.with_env(key, value)
    if network is not None:
        c.with_network(network)
        if alias:
            c.with_network_aliases(alias)
    if publish:
        c.ports[f"{publish}/tcp"] = ("127.0.0.1",)  # an ephemeral host port, loopback only
    return c.with_kwargs(labels=labels, **kwargs)


class ContainerLog:
    """Follows a container's output into a log file, secrets masked, line by line."""

    def __init__(self, container, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._follow, args=(container,), name=f"log-{container.name}",
                                        daemon=True)
        self._thread.start()

    def _follow(self, container) -> None:
        """Each line stamped with the time it reached us, as the native pump does, between a
        "started" and an "ended" line."""
        pending = b""
        with open(self.path, "a", encoding="utf-8", errors="replace") as log:
            log.write(f"{log_stamp(full=True)} -- container {container.name} followed\n")
            try:
                for chunk in container.logs(stream=True, follow=True):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        log.write(f"{log_stamp()} {redact(line.decode('utf-8', errors='replace'))}\n")
                    log.flush()
            except Exception:  # noqa: BLE001 - the container went away: the log ends here
                pass
            if pending:
                log.write(f"{log_stamp()} {redact(pending.decode('utf-8', errors='replace'))}\n")
            log.write(f"{log_stamp(full=True)} -- container {container.name} output ended\n")

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)

    def tail(self, lines: int) -> str:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))


class ContainerPostgres(PostgresCluster):
    """PostgreSQL+pgvector in a container, with the native cluster's database operations
    (``create_database`` lays databases out like init.sql, ``connect``, ``dsn``...)."""

    ALIAS = "letta-postgres"

    def __init__(self, image: str, *, network, labels: dict[str, str], log_path: Path, start_timeout: float,
                 name: str | None = None):
        # not PostgresCluster.__init__: there are no binaries or data directory on the host
        self.image, self.network, self.labels, self.name = image, network, labels, name
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.host, self.port = "127.0.0.1", None
        self.admin_password = secrets.token_urlsafe(18)
        self.letta_password = secrets.token_urlsafe(18)
        register_secret(self.admin_password)
        register_secret(self.letta_password)
        self.container = None
        self.started_in: float | None = None

    def start(self) -> "ContainerPostgres":
        started = time.monotonic()
        tc = labelled_container(self.image, labels=self.labels, network=self.network, alias=self.ALIAS, publish=5432,
                        **({"name": self.name} if self.name else {}),
                        env={"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": self.admin_password,
                             "POSTGRES_DB": "postgres"})
        # a test database: durability buys nothing, speed does
        tc.with_command(["postgres", "-c", "fsync=off", "-c", "synchronous_commit=off",
                         "-c", "full_page_writes=off", "-c", "max_connections=300"])
        tc.start()
        self.container = tc.get_wrapped_container()
        self._log = ContainerLog(self.container, self.log_path)
        self.port = host_port(self.container, 5432)

        def ready() -> bool:
            self.container.reload()
            if self.container.status != "running":
                raise StoppedDuringStart(f"PostgreSQL container ({self.image}) stopped during start. Last "
                                        f"lines of its log ({self.log_path}):\n{self._log.tail(30)}")
            return self._accepts_connections()

        try:
            wait_until(f"PostgreSQL ({self.image}) to accept connections on 127.0.0.1:{self.port}", ready,
                       timeout=self.start_timeout)
        except StartTimedOut as exc:
            raise StartTimedOut(f"{exc} Last lines of its log:\n{self._log.tail(30)}") from None
        self.create_letta_role()
        self.started_in = time.monotonic() - started
        return self

    def _accepts_connections(self) -> bool:
        try:
            with self.connect("postgres", admin=True, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def network_dsn(self, dbname: str) -> str:
        """Letta's DSN for ``dbname`` as seen from containers on the private network."""
        return f"postgresql://letta:{self.letta_password}@{self.ALIAS}:5432/{dbname}"

    def _exec(self, argv: list[str], what: str) -> bytes:
        code, (out, err) = self.container.exec_run(argv, user="postgres", demux=True)
        if code != 0:
            raise ProvisioningError(f"{what} failed in the PostgreSQL container (exit {code}): "
                                    f"{redact((err or b'').decode(errors='replace')[-2000:])}")
        return out or b""

    def dump_database(self, name: str, target: Path) -> None:
        target.write_bytes(self._exec(["pg_dump", "-Fc", "-d", name], f"pg_dump of {name}"))

    def load_archive(self, name: str, dump: Path) -> None:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(f"{name}.dump")
            info.size, info.mode = dump.stat().st_size, 0o644
            with open(dump, "rb") as f:
                tar.addfile(info, f)
        self.container.put_archive("/tmp", archive.getvalue())
        self._exec(["pg_restore", "--no-owner", "--role=letta", "--exit-on-error", "-d", name, f"/tmp/{name}.dump"],
                   f"pg_restore of {name}")

    def stop(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._log.join()
            self.container = None

    def cleanup(self) -> None:
        self.stop()
