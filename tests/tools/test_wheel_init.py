"""The operator's first five minutes, with nothing of this repository but the built wheel:
a fresh venv in an empty directory, `letta-compat init --compose docker-compose.yml`, then the
command init prints (`pytest --letta-matrix letta-matrix.toml --letta-suite --letta-checks smoke`)
passes against a real Letta 0.16.8 on real PostgreSQL+pgvector."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_letta_compat.cache import ENV_VAR as CACHE_ENV, cache_root

pytestmark = pytest.mark.letta_check("smoke")

ROOT = Path(__file__).resolve().parents[2]

# An operator's stack like Letta's own compose.yaml, pinned to the newest release this plugin
# knows (so init writes no upgrade path and the smoke run starts one server).
COMPOSE = """services:
  letta-db:
    image: pgvector/pgvector:pg15
    environment:
      POSTGRES_USER: letta
      POSTGRES_PASSWORD: letta
      POSTGRES_DB: letta
    volumes:
      - ./pgdata:/var/lib/postgresql/data
  letta:
    image: letta/letta:0.16.8
    depends_on:
      - letta-db
    ports:
      - "8283:8283"
    environment:
      LETTA_PG_URI: postgresql://letta:letta@letta-db:5432/letta
      SECURE: "true"
      LETTA_SERVER_PASSWORD: ${LETTA_SERVER_PASSWORD:-compose-test-password}
"""


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout's build/ is never touched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "pytest_letta_compat", src / "pytest_letta_compat",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, output(proc)
    (built,) = out.glob("pytest_letta_compat-*.whl")
    return built


def test_init_then_the_shipped_suite_passes_from_the_wheel_alone(wheel, tmp_path_factory, pytestconfig):
    venv = tmp_path_factory.mktemp("operator-venv")
    repo = tmp_path_factory.mktemp("operator-repo")  # empty: no conftest, no tests, no clone
    assert not any(repo.iterdir())
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LETTA_MATRIX", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "LETTA_SERVER_PASSWORD")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cache = cache_root(pytestconfig.getoption("--letta-cache-dir") or os.environ.get(CACHE_ENV)
                       or pytestconfig.getini("letta_cache_dir") or None)  # warm: no reinstall of Letta

    proc = run([sys.executable, "-m", "venv", str(venv)], repo, env, 300)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], repo, env, 600)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-c", "import pytest_letta_compat as p; print(p.__file__)"], repo, env, 60)
    installed = Path(proc.stdout.strip())
    assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT), installed

    (repo / "docker-compose.yml").write_text(COMPOSE)
    proc = run([str(venv / "bin" / "letta-compat"), "init", "--compose", "docker-compose.yml"], repo, env, 120)
    assert proc.returncode == 0, output(proc)
    assert (repo / "letta-matrix.toml").is_file() and (repo / ".github/workflows/letta-gate.yml").is_file()
    assert 'version = "0.16.8"' in (repo / "letta-matrix.toml").read_text()

    # the command init tells the operator to run next, verbatim
    (next_command,) = re.findall(r"^next: (pytest .*?)(?:   \(|$)", proc.stdout, re.M)
    argv = shlex.split(next_command)
    assert argv[:3] == ["pytest", "--letta-matrix", "letta-matrix.toml"] and "--letta-suite" in argv
    proc = run([str(venv / "bin" / "pytest"), *argv[1:], f"--letta-cache-dir={cache}", "-p", "no:cacheprovider",
                "-rs"], repo, env, 900)
    assert proc.returncode == 0, output(proc)
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, output(proc)
    # the tests came from the installed package: nothing of this repository is on the path
    assert "site-packages/pytest_letta_compat/suite/test_smoke.py" in proc.stdout, output(proc)
    assert str(ROOT) not in proc.stdout
    assert re.search(r"^server-0\.16\.8\s+pass\s*$", proc.stdout, re.M), output(proc)
