"""One ``letta server`` process: its own HOME, working directory, port and log."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from ..errors import redact, register_secret
from .install import ServerInstall
from .procs import ManagedProcess, on_a_free_port, wait_until


def without_ssl(dsn: str) -> str:
    """``dsn`` with ``sslmode=disable`` unless it says otherwise. Our embedded PostgreSQL runs
    without SSL: asyncpg's default ``prefer`` would ask for SSL on every new connection, and
    Letta with pooling on (LETTA_DISABLE_SQLALCHEMY_POOLING=false) forces ``ssl=require`` on a
    DSN that names no mode. Letta turns ``sslmode=`` into asyncpg's ``ssl=`` itself."""
    query = urlsplit(dsn).query
    if any(key in ("sslmode", "ssl") for key, _ in parse_qsl(query, keep_blank_values=True)):
        return dsn
    return f"{dsn}{'&' if query else '?'}sslmode=disable"


class LettaServerProcess:
    def __init__(
        self,
        install: ServerInstall,
        dsn: str,
        workdir: Path,
        *,
        redis: tuple[str, int] | None = None,
        llm_env: dict[str, str] | None = None,
        password: str | None = None,
        secure: bool = False,
        start_timeout: float = 300,
    ):
        self.install = install
        self.version = install.version
        self.dsn = dsn
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"  # letta writes ~/.letta
        self.cwd = self.workdir / "cwd"  # letta writes openapi_letta.json into its cwd
        self.log_path = self.workdir / "letta-server.log"
        self.redis = redis
        self.llm_env = dict(llm_env or {})
        self.secure = secure or password is not None
        self.password = password or (secrets.token_urlsafe(18) if self.secure else None)
        register_secret(self.password)
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: ManagedProcess | None = None
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LETTA_PG_URI": without_ssl(self.dsn),
            "PYTHONUNBUFFERED": "1",
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
            **self.llm_env,
        }
        if self.install.tiktoken_cache is not None:  # never a download of an encoding at run time
            env["TIKTOKEN_CACHE_DIR"] = str(self.install.tiktoken_cache)
        if self.redis:
            env["LETTA_REDIS_HOST"], env["LETTA_REDIS_PORT"] = self.redis[0], str(self.redis[1])
        if self.secure:
            env["LETTA_SERVER_SECURE"] = "true"
            env["LETTA_SERVER_PASSWORD"] = self.password or ""
        return env

    def _healthy(self) -> bool:
        resp = httpx.get(f"{self.url}/v1/health/", timeout=5)
        return resp.status_code == 200

    def start(self) -> "LettaServerProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        what = f"Letta server {self.version}"

        def start(port: int) -> ManagedProcess:
            self.port = port
            return ManagedProcess(what, [str(self.install.letta), "server", "--host", "127.0.0.1", "--port", str(port)],
                                  log_path=self.log_path, env=self._env(), cwd=self.cwd, stop_timeout=30).start()

        def wait(port: int, process: ManagedProcess) -> None:
            self.process = process
            self.started_in = wait_until(f"{what} to report healthy on {self.url}/v1/health/", self._healthy,
                                         timeout=self.start_timeout, process=process, interval=0.2)

        self.port, self.process = on_a_free_port(what, start, wait, bind_error="address already in use",
                                                 log=self.log_path, attempts=3)
        self.scrub_home()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.scrub_home()

    def scrub_home(self) -> None:
        """Letta writes its DSN, password included, into ``~/.letta/config`` at start (and reads it
        only then): mask it, so a CI job that uploads pytest's basetemp publishes no password."""
        for path in (self.home / ".letta").glob("config*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                masked = redact(text)
                if masked != text:
                    path.write_text(masked)

    def log_tail(self, lines: int = 80) -> str:
        return self.process.log_tail(lines) if self.process else ""
