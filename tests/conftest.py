"""Hypothesis runs derandomized under CI (CI=true): the same examples on every run, so a red CI
names a real regression, never a new random draw; locally it keeps exploring. A run that
changes the package's shipped data (pytest_letta_compat/data/) fails: only the scripts in
scripts/ write it. No test asks the real PyPI or npm registry what Letta Code they publish."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

try:
    from hypothesis import settings
except ImportError:  # the main job installs no test extra; those modules skip themselves
    settings = None

if settings is not None:
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI") else "default")


# Tests never ask the real registries whether a Letta Code release exists: a closed local port
# answers for them (offline: the shipped table alone counts); a test that needs a registry
# starts its own stand-in and points these at it.
CLOSED_PORT_URL = "http://127.0.0.1:9"
os.environ["LETTA_COMPAT_PYPI_URL"] = os.environ["LETTA_COMPAT_NPM_URL"] = CLOSED_PORT_URL


SHIPPED_DATA = Path(__file__).resolve().parents[1] / "pytest_letta_compat" / "data"
_shipped_before: dict[str, str] = {}


def _shipped_digests() -> dict[str, str]:
    return {str(p.relative_to(SHIPPED_DATA)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(SHIPPED_DATA.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def pytest_sessionstart(session):
    _shipped_before.update(_shipped_digests())


def pytest_sessionfinish(session, exitstatus):
    after = _shipped_digests()
    changed = sorted(k for k in set(after) | set(_shipped_before) if after.get(k) != _shipped_before.get(k))
    if changed:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(
            f"ERROR: this run changed the package's shipped data ({', '.join(changed)}); tests never write "
            "pytest_letta_compat/data/, the scripts in scripts/ do", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def git():
    """``git(repo, *args)``: git in a test's own repository (an operator's deployment repo), with an identity."""
    return _git


@pytest.fixture(scope="module")
def seeded(letta_backend, letta_server_factory, letta_fake_llm, tmp_path_factory):
    """(database name, agents by role, dump) of a 0.11.3 database seeded through the real 0.11.3 API
    on the session's backend (rehearse_seed.seed), and its custom-format dump; dropped afterwards."""
    from rehearse_seed import seed

    dump = tmp_path_factory.mktemp("rehearse") / "letta-0.11.3.dump"
    name, agents = seed(letta_backend, letta_server_factory, letta_fake_llm, dump)
    yield name, agents, dump
    letta_backend.drop_database(name)
