"""An operator's compose stack as this machine reaches it: Docker Compose run as the operator
would run it (``-f FILE [-f OVERRIDE] -p PROJECT``), the Letta service's published URL, its
database (through its published port, or a relay container on the stack's network), and the
Letta service started *unpublished*: a one-off container of the service that no client can
reach, reached by us through a relay, so a new release is verified before its port opens.

Every container started here carries ``org.letta-compat.relay=<project>``: the next run removes
what a killed run left.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..backends.docker import relay
from ..backends.docker.compose_stack import CommandFailed, compose_command, run_logged
from ..errors import LettaCompatError
from ..matrix import compose_file
from ..postgres.client import connect
from ..provision.procs import wait_until
from .compose_deployment import LETTA_PORT, ComposeDeployment, read_deployment
from .upgrade import server_version

HEALTHY_TIMEOUT = 600.0
TEMPORARY_LABEL = "org.letta-compat.relay"  # =<compose project>: the relays and the unpublished server of a run
RELAY_PORT = 18283  # inside a relay container; published on an ephemeral port of 127.0.0.1


class ComposeStackError(LettaCompatError):
    """A Docker Compose or Docker command for the operator's stack that failed (the message says
    which, and where its full output is)."""


class StackCommands:
    """Docker Compose and Docker for one operator project; every call's output (masked) goes to
    ``log``."""

    def __init__(self, deployment: ComposeDeployment, log: Path | None):
        self.deployment, self.log = deployment, log  # log None: output kept only in error messages
        files = ["-f", str(deployment.file)]
        if (override := compose_file.override_file(deployment.file)) is not None:
            files += ["-f", str(override)]  # -f turns off Compose's own merge of the override
        self.compose = [*compose_command(), *files, "-p", deployment.project,
                        "--project-directory", str(deployment.file.parent)]
        self._relays: list[str] = []
        self._swept = False
        self._dsn: str | None = None  # one way to the database per run (and at most one relay to it)
        self._database_relayed = False
        self._unpublished: tuple[str, str] | None = None  # (container, URL through its relay)

    @property
    def relayed(self) -> bool:
        """Whether the database is reached through a relay (it publishes no port)."""
        return self._database_relayed

    def run(self, argv: list[str], what: str, timeout: float = 600) -> str:
        try:
            return run_logged(argv, what, self.log, timeout)[0]
        except CommandFailed as failed:
            if failed.returncode is None:
                raise ComposeStackError(f"`{what}` did not finish within {timeout:.0f} s (log: {self.log}).") from None
            said = [line.strip() for line in failed.output.splitlines() if line.strip()]
            last = said[-1][-400:] if said else "no output"  # Compose v1 prints its own traceback: its last line says why
            hint = (" Is Docker running here, and is DOCKER_HOST the engine of this stack?"
                    if re.search(r"server API version|Cannot connect to the Docker daemon", failed.output) else "")
            raise ComposeStackError(f"`{what}` failed (exit {failed.returncode}): {last}.{hint}"
                                    + (f" Full output: {self.log}" if self.log else "")) from None

    def compose_run(self, *args: str, timeout: float = 600) -> str:
        return self.run([*self.compose, *args], f"docker compose {' '.join(args)}", timeout)

    def host_port(self, service: str, target: int) -> int | None:
        """The 127.0.0.1 port Docker publishes ``service``'s ``target`` on, or None."""
        try:
            out = self.compose_run("port", service, str(target), timeout=60).strip()
        except ComposeStackError:
            return None
        port = out.rsplit(":", 1)[-1]
        return int(port) if port.isdigit() and port != "0" else None

    def container(self, service: str) -> str | None:
        ids = self.compose_run("ps", "-q", service, timeout=60).split()
        return ids[0] if ids else None

    # -- the database ------------------------------------------------------------------------
    def database_dsn(self) -> str:
        """Letta's database as this machine reaches it: its published port, or a relay."""
        if self._dsn is None:
            self._dsn = self._reach_database()
        return self._dsn

    def _reach_database(self) -> str:
        db = self.deployment.database
        if db.service is None:
            return db.dsn(db.host, db.port)
        port = self.host_port(db.service, db.port)
        if port is not None:
            return db.dsn("127.0.0.1", port)
        container = self.container(db.service)
        if container is None:
            raise ComposeStackError(f"the database service `{db.service}` of {self.deployment.file} is not running: "
                                    "start the stack (`docker compose up -d`) and run the command again.")
        dsn = db.dsn("127.0.0.1", self._start_relay(container, db.host, db.port, "the database"))
        self._database_relayed = True

        def answers() -> bool:  # Docker's port accepts at once; the relay's python listens a moment later
            try:
                with connect(dsn, connect_timeout=5):
                    return True
            except LettaCompatError:
                return False

        wait_until(f"the relay to the database service `{db.service}`", answers, timeout=60, interval=1)
        return dsn

    # -- relays ------------------------------------------------------------------------------
    def _start_relay(self, beside: str, host: str, port: int, what: str) -> int:
        """A relay on the network of container ``beside`` to ``host:port``; its 127.0.0.1 port."""
        networks = json.loads(self.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                        beside], f"docker inspect (the network of {what})", 60))
        network = next(iter(networks))
        source = Path(relay.__file__).read_text(encoding="utf-8")
        self.sweep()
        container = self.run(
            ["docker", "run", "-d", "--rm", "--label", self._label, "--network", network,
             "-p", f"127.0.0.1::{RELAY_PORT}", "--entrypoint", "python3", self.deployment.image, "-c", source,
             "0.0.0.0", str(RELAY_PORT), host, str(port)], f"docker run (a relay to {what})", 300).strip()
        self._relays.append(container)
        out = self.run(["docker", "port", container, f"{RELAY_PORT}/tcp"], f"docker port (the relay to {what})", 60)
        return int(out.split()[0].rsplit(":", 1)[-1])

    @property
    def _label(self) -> str:
        return f"{TEMPORARY_LABEL}={self.deployment.project}"

    def sweep(self) -> None:
        """Remove the relays and unpublished servers a killed run of this project left (once)."""
        if not self._swept:
            self._swept = True
            self._remove_labelled()

    def _remove_labelled(self) -> None:
        listed = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={self._label}"],
                                capture_output=True, text=True)
        for container in listed.stdout.split():
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)

    def close(self) -> None:
        if self._relays or self._unpublished:
            self._remove_labelled()
            self._relays, self._dsn, self._unpublished, self._database_relayed = [], None, None, False

    # -- the Letta service -------------------------------------------------------------------
    def letta_url(self) -> str | None:
        port = self.host_port(self.deployment.service, LETTA_PORT)
        return f"http://127.0.0.1:{port}" if port else None

    def stop_letta(self) -> None:
        self.remove_unpublished()
        self.compose_run("stop", self.deployment.service)

    def start_letta(self) -> None:
        self.compose_run("up", "-d", "--no-deps", self.deployment.service)

    def start_unpublished(self) -> str:
        """The Letta service as the file now says (its pin included), but as a one-off container
        that publishes no port (``docker compose run`` leaves ports out): clients cannot reach it.
        Its URL through a relay of ours."""
        self.sweep()
        name = f"{self.deployment.project}-{self.deployment.service}-unpublished"
        self.compose_run("run", "-d", "--no-deps", "--name", name, "--label", self._label, self.deployment.service)
        port = self._start_relay(name, name, LETTA_PORT, f"the unpublished `{self.deployment.service}`")
        self._unpublished = (name, f"http://127.0.0.1:{port}")
        return self._unpublished[1]

    def remove_unpublished(self) -> None:
        if self._unpublished is not None:
            self.run(["docker", "rm", "-f", self._unpublished[0]], "docker rm (the unpublished server)", 120)
            self._unpublished = None

    def wait_healthy(self, version: str, api_key: str | None, timeout: float = HEALTHY_TIMEOUT, *,
                     url: str | None = None) -> str:
        """The Letta service's URL once it answers as ``version`` (``url``: there, else on its
        published port)."""
        deadline = time.monotonic() + timeout
        seen = None
        where: Callable[[], str | None] = (lambda: url) if url else self.letta_url
        while time.monotonic() < deadline:
            current = where()
            if current is not None:
                try:
                    seen = server_version(current, api_key)
                except LettaCompatError:
                    seen = None
                if seen == version:
                    return current
            time.sleep(2)
        logs = f"docker logs {self._unpublished[0]}" if url and self._unpublished else \
            f"docker compose logs {self.deployment.service}"
        raise ComposeStackError(f"the service `{self.deployment.service}` did not answer as Letta {version} within "
                                f"{timeout:.0f} s (last seen: {seen or 'nothing'}); its log: `{logs}` (this run's: "
                                f"{self.log})")


@contextmanager
def stack_endpoints(file: str | os.PathLike, service: str | None = None, *,
                    database: bool = True) -> Iterator[tuple[str, str | None, str | None]]:
    """(Letta's URL, its password, its database's DSN or None without ``database``) as this
    machine reaches a running compose stack, for the commands that read it (backup,
    move-to-local); a relay, when one was needed, is removed at the end."""
    deployment = read_deployment(file, service)
    commands = StackCommands(deployment, None)
    try:
        url = commands.letta_url()
        if url is None:
            raise ComposeStackError(f"service `{deployment.service}` of {deployment.file} publishes no port for "
                                    f"{LETTA_PORT}, or is not running: start the stack (`docker compose up -d`).")
        yield url, deployment.password, commands.database_dsn() if database else None
    finally:
        commands.close()
