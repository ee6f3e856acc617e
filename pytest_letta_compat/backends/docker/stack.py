"""A Letta server container (the docker backend's stack), and the port Letta listens on."""

from __future__ import annotations

import httpx
import psycopg

from ...errors import StartTimedOut, StoppedDuringStart
from ...provision.procs import wait_until
from ..base import LettaStack
from .containers import ContainerLog, host_port

LETTA_PORT = 8283


class DockerStack(LettaStack):
    """A Letta server container on the session's network."""

    def __init__(self, *, version: str, image: str, database: str, password: str | None, dsn: str,
                 container, log: ContainerLog):
        self.version, self.image, self.database, self.password = version, image, database, password
        self.container = container
        self._dsn = dsn
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
                raise StoppedDuringStart(
                    f"The Letta {self.version} container ({self.image}) exited with code {code} before it "
                    f"became healthy. Last lines of its log ({self.log_path}):\n{self.log_tail(40)}")
            return httpx.get(f"{self.url}/v1/health/", timeout=5).status_code == 200

        try:
            self.started_in = wait_until(f"Letta {self.version} ({self.image}) to report healthy on "
                                         f"{self.url}/v1/health/", healthy, timeout=timeout, interval=0.5)
        except StartTimedOut as exc:
            raise StartTimedOut(f"{exc} Last lines of its log ({self.log_path}):\n{self.log_tail(40)}") from None
        return self.started_in

    def stop(self) -> None:
        try:
            self.container.stop(timeout=20)
            self.container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._log.join()
