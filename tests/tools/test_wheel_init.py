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
import yaml

from pytest_letta_compat import versions
from pytest_letta_compat import versions_upgrades as vu
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


@pytest.fixture(scope="module")
def operator(wheel, tmp_path_factory, pytestconfig):
    """A fresh venv with nothing but the wheel installed: (venv, env, warm cache)."""
    venv = tmp_path_factory.mktemp("operator-venv")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LETTA_MATRIX", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "LETTA_SERVER_PASSWORD")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cache = cache_root(pytestconfig.getoption("--letta-cache-dir") or os.environ.get(CACHE_ENV)
                       or pytestconfig.getini("letta_cache_dir") or None)  # warm: no reinstall of Letta
    here = tmp_path_factory.mktemp("install-from")
    proc = run([sys.executable, "-m", "venv", str(venv)], here, env, 300)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], here, env, 600)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-c", "import pytest_letta_compat as p; print(p.__file__)"], here, env, 60)
    installed = Path(proc.stdout.strip())
    assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT), installed
    return venv, env, cache


def test_init_then_the_shipped_suite_passes_from_the_wheel_alone(operator, tmp_path_factory):
    venv, env, cache = operator
    repo = tmp_path_factory.mktemp("operator-repo")  # empty: no conftest, no tests, no clone
    assert not any(repo.iterdir())

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


# Paths none of this project's matrices name, in one run, from the wheel alone (issue #21):
# a same-head bump (nothing to migrate), and the longest jump, from the first release, to the
# same target: two paths to one target, so every database name must be unique per path.
PATHS = """name = "where-operators-stand"
[[upgrade]]
from = "0.16.7"
to = "0.16.8"
[[upgrade]]
from = "0.11.0"
to = "0.16.8"
"""


def test_same_head_and_the_longest_jump_to_one_target_pass_from_the_wheel(operator, tmp_path_factory):
    venv, env, cache = operator
    repo = tmp_path_factory.mktemp("operator-paths")
    (repo / "paths.toml").write_text(PATHS)
    proc = run([str(venv / "bin" / "pytest"), "--letta-matrix", "paths.toml", "--letta-suite", "--letta-checks",
                "upgrade,schema", "-k", "through_the_cli or identical_to_a_fresh_one", f"--letta-cache-dir={cache}",
                "-p", "no:cacheprovider", "-rs"], repo, env, 1800)
    assert proc.returncode == 0, output(proc)
    assert re.search(r"^upgrade-0\.16\.7-to-0\.16\.8\s+pass\s+pass\s*$", proc.stdout, re.M), output(proc)
    assert re.search(r"^upgrade-0\.11\.0-to-0\.16\.8\s+pass\s+pass\s*$", proc.stdout, re.M), output(proc)
    assert "4 passed" in proc.stdout, output(proc)


def test_advise_answers_the_server_path_for_every_release_from_the_wheel(operator, tmp_path_factory):
    venv, env, _ = operator
    here = tmp_path_factory.mktemp("operator-advise")
    for version in versions.known_server_versions()[:-1]:
        proc = run([str(venv / "bin" / "letta-compat"), "advise", "--server", version], here, env, 60)
        assert proc.returncode in (0, 1), output(proc)
        path = vu.measured_path(version, vu.FINAL)
        assert path is not None, f"the shipped table has no row for {version} -> {vu.FINAL}"
        assert f"Server upgrade {version} -> {vu.FINAL}:" in proc.stdout
        assert path["verdict"] in proc.stdout and "not measured yet" not in proc.stdout.split("one release")[0]
        assert "matrices/" not in proc.stdout.split("Letta Code on")[0]


def test_the_workflow_init_writes_runs_its_shell_steps(operator, tmp_path_factory, git):
    """The workflow's `run:` steps, verbatim, in the repository as CI checks it out (init's files
    committed, the base branch as origin/main): install the wheel init put there into a fresh
    Python, the gate (an unchanged pin: nothing to check), and the daily watch of the newest
    Letta Code (the registries are a closed port here: the shipped table's newest, for real).
    Left out: the `uses:` steps (checkout, setup-python, cache, upload) and the apt-get step
    (.ci/run installs the same packages)."""
    venv, env, cache = operator
    repo = tmp_path_factory.mktemp("operator-ci")
    (repo / "docker-compose.yml").write_text(COMPOSE)
    proc = run([str(venv / "bin" / "letta-compat"), "init", "--compose", "docker-compose.yml"], repo, env, 300)
    assert proc.returncode == 0, output(proc)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "letta-compat init")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")

    python = tmp_path_factory.mktemp("ci-python")
    proc = run([sys.executable, "-m", "venv", str(python)], repo, env, 300)
    assert proc.returncode == 0, output(proc)
    ci_env = {**env, "PATH": f"{python / 'bin'}{os.pathsep}{env['PATH']}", "LETTA_COMPAT_CACHE": str(cache)}
    workflow = yaml.safe_load((repo / ".github/workflows/letta-gate.yml").read_text())
    ran = []
    for job in ("gate", "watch"):
        for step in workflow["jobs"][job]["steps"]:
            script = step.get("run")
            if script is None or "apt-get" in script:
                continue
            script = script.replace("${{ github.base_ref }}", "main")
            proc = run(["bash", "-eo", "pipefail", "-c", script], repo, ci_env, 1200)
            assert proc.returncode == 0, f"{job}: {step.get('name')}\n{output(proc)}"
            ran.append((job, step.get("name"), proc.stdout))
    assert [name for _, name, _ in ran] == ["Install pytest-letta-compat", "Run the gate",
                                            "Install pytest-letta-compat", "Watch the newest Letta Code"]
    installed = run([str(python / "bin" / "python"), "-c", "import pytest_letta_compat as p; print(p.__file__)"],
                    repo, ci_env, 60).stdout.strip()
    assert installed.startswith(str(python)), installed
    assert "nothing to check" in ran[1][2]
    assert re.search(r"Letta Code \d+\.\d+\.\d+ works with your Letta 0\.16\.8\.", ran[3][2]), ran[3][2][-2000:]
    assert (repo / "letta-watch-report.json").is_file()
