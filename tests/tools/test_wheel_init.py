"""The operator's first five minutes, with nothing of this repository but the built wheel:
a fresh venv in an empty directory, `letta-compat init --compose docker-compose.yml`, then the
command init prints (`pytest --letta-matrix letta-matrix.toml --letta-suite --letta-checks smoke`)
passes against a real Letta 0.16.8 on real PostgreSQL+pgvector."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def build_wheel(tmp_path_factory, edit=None) -> Path:
    """A wheel built from a copy of the sources (the checkout's build/ is never touched);
    ``edit(src)`` may change the copy first."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "pytest_letta_compat", src / "pytest_letta_compat",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if edit is not None:
        edit(src)
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, output(proc)
    (built,) = out.glob("pytest_letta_compat-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory)


def venv_with(wheel: Path, env: dict[str, str], tmp_path_factory) -> Path:
    """A fresh venv in which ``wheel`` (and its dependencies) alone are installed."""
    venv = tmp_path_factory.mktemp("operator-venv")
    here = tmp_path_factory.mktemp("install-from")
    proc = run([sys.executable, "-m", "venv", str(venv)], here, env, 300)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], here, env, 600)
    assert proc.returncode == 0, output(proc)
    proc = run([str(venv / "bin" / "python"), "-c", "import pytest_letta_compat as p; print(p.__file__)"], here, env, 60)
    installed = Path(proc.stdout.strip())
    assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT), installed
    return venv


@pytest.fixture(scope="module")
def operator(wheel, tmp_path_factory, pytestconfig):
    """A fresh venv with nothing but the wheel installed: (venv, env, warm cache)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LETTA_MATRIX", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "LETTA_SERVER_PASSWORD")}
    cache = cache_root(pytestconfig.getoption("--letta-cache-dir") or os.environ.get(CACHE_ENV)
                       or pytestconfig.getini("letta_cache_dir") or None)  # warm: no reinstall of Letta
    venv = venv_with(wheel, env, tmp_path_factory)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
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
                "-rs", "--trace-config"], repo, env, 900)
    assert proc.returncode == 0, output(proc)
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, output(proc)
    # the plugin and its tests came from the installed package: nothing of this repository is on the path
    assert "site-packages/pytest_letta_compat/plugin/hooks.py" in proc.stdout, output(proc)
    assert "letta-suite/test_smoke.py" in proc.stdout and str(ROOT) not in proc.stdout
    assert re.search(r"^server-0\.16\.8\s+pass\s*$", proc.stdout, re.M), output(proc)


# Paths none of this project's matrices name, in one run, from the wheel alone (issue #21):
# a same-head bump (nothing to migrate), and the incident's release straight to the final one
# (the matrices go 0.11.3 -> 0.16.2 -> 0.16.8): two paths to one target, so every database name
# must be unique per path. (0.11.3's seed is in the cache from the suite's run: CI's budget.)
PATHS = """name = "where-operators-stand"
[[upgrade]]
from = "0.16.7"
to = "0.16.8"
[[upgrade]]
from = "0.11.3"
to = "0.16.8"
"""


def test_same_head_and_a_long_jump_to_one_target_pass_from_the_wheel(operator, tmp_path_factory):
    venv, env, cache = operator
    repo = tmp_path_factory.mktemp("operator-paths")
    (repo / "paths.toml").write_text(PATHS)
    proc = run([str(venv / "bin" / "pytest"), "--letta-matrix", "paths.toml", "--letta-suite", "--letta-checks",
                "upgrade,schema", "-k", "through_the_cli or identical_to_a_fresh_one", f"--letta-cache-dir={cache}",
                "-p", "no:cacheprovider", "-rs"], repo, env, 1800)
    assert proc.returncode == 0, output(proc)
    assert re.search(r"^upgrade-0\.16\.7-to-0\.16\.8\s+pass\s+pass\s*$", proc.stdout, re.M), output(proc)
    assert re.search(r"^upgrade-0\.11\.3-to-0\.16\.8\s+pass\s+pass\s*$", proc.stdout, re.M), output(proc)
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


# Letta Code released after the shipped table (issue #21): a wheel whose release table ends two
# releases before NEWER, as ours does the day after each refresh, and a registry (a local
# stand-in speaking PyPI's JSON API) that publishes NEWER.
NEWER = "0.34.12"


class _PyPI(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/pypi/letta/json":
            files = [{"filename": "letta.whl", "yanked": False}]
            body = json.dumps({"releases": {"0.32.19": files, "0.34.11": files, NEWER: files}}).encode()
        elif self.path.startswith("/@letta-ai"):
            body = json.dumps({"versions": {"0.25.9": {}}}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _table_ends_before_newer(src: Path) -> None:
    table_file = src / "pytest_letta_compat" / "data" / "letta_code_releases.json"
    table = json.loads(table_file.read_text())
    table["releases"] = [r for r in table["releases"] if r["version"] not in ("0.34.11", NEWER)]
    table_file.write_text(json.dumps(table, indent=1))
    compat_file = src / "pytest_letta_compat" / "data" / "letta_code_compat.json"  # nor was it measured
    compat = json.loads(compat_file.read_text())
    compat["pairs"] = [p for p in compat["pairs"] if p["letta_code"] != NEWER]
    compat["letta_code"] = [v for v in compat["letta_code"] if v != NEWER]
    compat_file.write_text(json.dumps(compat, indent=1))


def test_a_letta_code_release_newer_than_the_table_is_gated_and_advised(operator, tmp_path_factory, git):
    _, base_env, cache = operator
    registry = ThreadingHTTPServer(("127.0.0.1", 0), _PyPI)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{registry.server_address[1]}"
    env = {**base_env, "LETTA_COMPAT_PYPI_URL": url, "LETTA_COMPAT_NPM_URL": url, "LETTA_COMPAT_CACHE": str(cache)}
    try:
        venv = venv_with(build_wheel(tmp_path_factory, _table_ends_before_newer), env, tmp_path_factory)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        here = tmp_path_factory.mktemp("operator-newer")
        table = run([str(venv / "bin" / "letta-compat"), "versions", "--letta-code"], here, env, 60)
        assert not re.search(rf"^{re.escape(NEWER)}\s", table.stdout, re.M)  # the table ends before it

        advised = run([str(venv / "bin" / "letta-compat"), "advise", "--server", "0.16.8", "--letta-code", NEWER],
                      here, env, 60)
        assert advised.returncode == 1, output(advised)
        assert f"Letta Code {NEWER} was published after this package's tables: not measured yet" in advised.stdout
        assert f"letta-compat advise --server 0.16.8 --letta-code {NEWER} --measure" in advised.stdout

        (here / "docker-compose.yml").write_text("services:\n  letta:\n    image: letta/letta:0.16.8\n")
        (here / "requirements.txt").write_text("letta==0.32.19\n")
        git(here, "init", "-q")
        git(here, "add", ".")
        git(here, "commit", "-qm", "Letta Code 0.32.19")
        (here / "requirements.txt").write_text(f"letta=={NEWER}\n")
        git(here, "commit", "-qam", f"bump Letta Code to {NEWER}")
        gated = run([str(venv / "bin" / "letta-compat"), "gate", "--compose", "docker-compose.yml", "--", "-k",
                     "headless_turn or agent_it_created", "-p", "no:cacheprovider"], here, env, 1200)
        assert gated.returncode == 0, output(gated)
        assert f"Letta Code moves from 0.32.19 to {NEWER} (requirements.txt)" in gated.stdout
        assert f"Letta Code 0.32.19 -> {NEWER} on Letta 0.16.8: compatible." in gated.stdout
        assert re.search(r"2 passed", gated.stdout), output(gated)
    finally:
        registry.shutdown()
