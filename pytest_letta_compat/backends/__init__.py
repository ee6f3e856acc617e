"""One interface for "a running Letta stack", with native and Docker implementations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import httpx
import psycopg

from ..errors import LettaCompatError


class LettaStack(ABC):
    """A running Letta server with its PostgreSQL database (and Redis beside it)."""

    version: str
    url: str
    database: str  # name of the database the server uses
    password: str | None
    log_path: Path
    started_in: float | None  # seconds from process start to healthy

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

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.password}"} if self.password else {}

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client bound to the server, authenticated when it runs in secure mode."""
        kwargs.setdefault("timeout", 120)
        headers = {**self.auth_headers, **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} Letta {self.version} at {self.url}>"


class LettaBackend(ABC):
    """Starts PostgreSQL and Letta servers; owns every database and server it made."""

    name: str

    @abstractmethod
    def start(self) -> "LettaBackend": ...

    @abstractmethod
    def stop(self) -> None:
        """Stop every server, then PostgreSQL."""

    @abstractmethod
    def create_database(self, name: str, *, version: str | None = None) -> str:
        """A new database; with ``version``, a copy of that version's migrated template.
        Without it, an empty database laid out as Letta's init.sql does. Returns its DSN."""

    @abstractmethod
    def drop_database(self, name: str) -> None: ...

    @abstractmethod
    def connect(self, database: str) -> psycopg.Connection: ...

    @abstractmethod
    def dsn(self, database: str) -> str: ...

    @abstractmethod
    def migrate(self, database: str, version: str) -> float:
        """Upgrade ``database`` in place to ``version``'s alembic head; returns seconds."""

    @abstractmethod
    def start_server(self, version: str, *, database: str | None = None, secure: bool = False,
                     password: str | None = None) -> LettaStack:
        """Start Letta ``version`` on ``database`` (default: a fresh copy of its template)."""


def make_backend(name: str, **kwargs) -> LettaBackend:
    if name == "native":
        from .native import NativeBackend

        if kwargs.pop("compose", None):
            raise LettaCompatError("--letta-compose runs the operator's Docker stack: it needs the docker "
                                   "backend (drop --letta-backend native).")
        return NativeBackend(**kwargs)
    if name == "docker":
        from .docker.backend import DockerBackend

        return DockerBackend(**kwargs)
    raise LettaCompatError(
        f"Backend {name!r} is not available in this version of pytest-letta-compat. "
        "Allowed: \"native\" (Letta servers as processes on an embedded PostgreSQL with pgvector), "
        "\"docker\" (letta/letta and pgvector containers)."
    )
