"""``--letta-compose FILE``: the operator's own stack as the server of its Letta version.

The suite runs a copy of the file (compose_copy.suite_copy) as its own compose project: the
operator's images, environment, init scripts and depends_on, but ephemeral loopback ports,
throwaway data volumes and our labels, so it never touches their running stack or data.
Docker Compose is called directly (``docker compose`` or ``docker-compose``), with a timeout,
its output masked into compose.log. pytest-docker is not used: its helpers live in a module
that imports pytest (this layer does not), and its fixtures' global names
(``docker_compose_file``, ``docker_services``) belong to the operator's own conftest, which
may point them at their real stack; ours must never run that file unisolated.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ...errors import ProvisioningError, redact, register_secret
from ...matrix import compose_file as compose
from .compose_copy import suite_copy
from ..base import LettaStack
from . import images as docker_images
from .containers import ContainerLog, host_port
from .stack import LETTA_PORT, DockerStack


def compose_command() -> list[str]:
    """``docker compose`` (v2 plugin) when installed, else ``docker-compose`` (v1)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise ProvisioningError("Docker Compose is not installed (--letta-compose and --compose run it): install Docker's compose plugin, or "
                            "`apt-get install docker-compose`.")


class CommandFailed(Exception):
    """A command of :func:`run_logged` that failed (``returncode``) or timed out (None)."""

    def __init__(self, what: str, returncode: int | None, output: str, timeout: float):
        super().__init__(what)
        self.what, self.returncode, self.output, self.timeout = what, returncode, output, timeout


def run_logged(argv: list[str], what: str, log: Path | None, timeout: float) -> tuple[str, str]:
    """Run ``argv`` (Docker or Docker Compose) and append ``$ what`` and its masked output to
    ``log`` (None: nowhere); (stdout, masked stdout+stderr), or :class:`CommandFailed`."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandFailed(what, None, "", timeout) from None
    output = redact(proc.stdout + proc.stderr)
    if log is not None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {what}\n{output}\n")
    if proc.returncode != 0:
        raise CommandFailed(what, proc.returncode, output, timeout)
    return proc.stdout, output


class ComposeStack(DockerStack):
    """The compose project's Letta container: shared by every test that asks for its
    version on its own database, so ``stop()`` leaves it running until the session ends."""

    def stop(self) -> None:
        pass


class ComposeProject:
    def __init__(self, backend):
        self.backend = backend
        self.path = backend.compose_path.resolve()
        self.service, self.image, self.version = compose.check_pinned(self.path)
        self.doc = compose.load(self.path)
        self.env = compose.service_environment(self.doc, self.service, self.path.parent)
        self.secure = self.env.get("SECURE", "false").lower() == "true"
        self.password = self.env.get("LETTA_SERVER_PASSWORD") or None
        register_secret(self.password)
        self.project = f"lettacompat{backend.session}"
        self.workdir = backend.workdir / "compose"
        self.file = self.workdir / "docker-compose.yml"
        self._stack: ComposeStack | None = None
        self._up = False

    def serves(self, version: str, database: str | None, secure: bool, password: str | None) -> bool:
        return version == self.version and database is None and password is None and secure == self.secure

    def _run(self, *args: str, timeout: float) -> str:
        argv = [*compose_command(), "-p", self.project, "-f", str(self.file),
                "--project-directory", str(self.path.parent), *args]
        try:
            return run_logged(argv, " ".join(args), self.workdir / "compose.log", timeout)[1]
        except CommandFailed as failed:
            if failed.returncode is None:
                raise ProvisioningError(f"`{failed.what}` of {self.path} did not finish within "
                                        f"{timeout:.0f} s.") from None
            raise ProvisioningError(f"Docker Compose `{failed.what}` failed for {self.path} (exit "
                                    f"{failed.returncode}):\n{failed.output.strip()[-1500:]}") from None

    def _database_service(self) -> tuple[str | None, str]:
        """The compose service (if any) behind the Letta service's LETTA_PG_URI, and its port."""
        uri = self.env.get("LETTA_PG_URI", "")
        parts = urlsplit(uri) if uri else None
        if parts is None or not parts.hostname:
            raise ProvisioningError(f"{self.path}: service `{self.service}` sets no LETTA_PG_URI, so its Letta uses "
                                    "the image's internal PostgreSQL, which the suite cannot reach. Run PostgreSQL "
                                    "as its own service and point LETTA_PG_URI at it, as Letta's compose.yaml does.")
        port = str(parts.port or 5432)
        return (parts.hostname if parts.hostname in self.doc["services"] else None), port

    def _local_images(self) -> dict[str, str]:
        """Stand-ins for the official images that are neither present nor pullable."""
        images = {}
        for name, svc in self.doc["services"].items():
            image = svc.get("image") if isinstance(svc, dict) else None
            if not image or compose.ImageRef.parse(image).digest:
                continue  # a digest asks for that exact image: no stand-in
            standin = (docker_images.local_letta(self.version) if name == self.service
                       else docker_images.pgvector_standin(image))
            if standin:
                images[name] = self.backend.resolve(image, standin, f"{self.path} service `{name}`")
        return {name: image for name, image in images.items() if image != self.doc["services"][name]["image"]}

    def up(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        db_service, db_port = self._database_service()
        letta_env = self.backend.container_env()
        if self.secure and not self.password:  # the server would make up one we cannot know
            self.password = secrets.token_urlsafe(18)
            register_secret(self.password)
            letta_env["LETTA_SERVER_PASSWORD"] = self.password
        publish = {self.service: [self.env.get("PORT", str(LETTA_PORT))]}
        if db_service:
            publish.setdefault(db_service, []).append(db_port)
        doc, notes = suite_copy(self.doc, self.path.parent, labels=self.backend.labels, publish=publish,
                                        environment={self.service: letta_env}, images=self._local_images())
        for note in notes:
            warnings.warn(f"{self.path}: {note}.", UserWarning, stacklevel=2)
        self.file.write_text(yaml.safe_dump(doc, sort_keys=False))
        self._up = True  # from here on, down() has something to remove
        self._run("up", "-d", "--no-build", timeout=max(self.backend.start_timeout, 600))
        container = self._service_container(self.service)
        self.backend.start_loopback_forwarders(container)
        log = ContainerLog(container, self.workdir / "letta-server.log")
        database = urlsplit(self.env["LETTA_PG_URI"]).path.lstrip("/") or "letta"
        stack = ComposeStack(version=self.version, image=self.image, database=database, password=self.password,
                             dsn=self._host_dsn(db_service, db_port), container=container, log=log)
        self.backend.stacks.append(stack)
        stack.wait_healthy(self.backend.start_timeout)
        self._stack = stack

    def _service_container(self, service: str):
        found = self.backend.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        if not found:
            raise ProvisioningError(f"Docker Compose started no container for service `{service}` of {self.path}.")
        return found[0]

    def _host_dsn(self, db_service: str | None, db_port: str) -> str:
        """LETTA_PG_URI as the host reaches it: through the database service's published port."""
        parts = urlsplit(self.env["LETTA_PG_URI"])  # its password is masked wherever a DSN is printed
        netloc = parts.netloc
        if db_service:
            port = host_port(self._service_container(db_service), int(db_port))
            netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{port}" if "@" in parts.netloc else f"127.0.0.1:{port}"
        return parts._replace(scheme="postgresql", netloc=netloc).geturl()

    def stack(self) -> LettaStack:
        if self._stack is None:
            self.up()
        return self._stack

    def down(self) -> None:
        if self._up:
            self._up = False
            try:
                self._run("down", "-v", "--remove-orphans", "-t", "10", timeout=300)
            except ProvisioningError:
                pass  # the labelled sweep in DockerBackend.stop removes what is left
