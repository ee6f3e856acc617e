"""Hypothesis runs derandomized under CI (CI=true): the same examples on every run, so a red CI
names a real regression, never a new random draw; locally it keeps exploring."""

from __future__ import annotations

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


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def git():
    """``git(repo, *args)``: git in a test's own repository (an operator's deployment repo), with an identity."""
    return _git


@pytest.fixture(scope="module")
def seeded(letta_postgres, letta_server_factory, fake_llm, tmp_path_factory):
    """(database name, agents by role, dump) of a 0.11.3 database seeded through the real 0.11.3 API
    on the session's backend (rehearse_seed.seed), and its custom-format dump; dropped afterwards."""
    from rehearse_seed import seed

    dump = tmp_path_factory.mktemp("rehearse") / "letta-0.11.3.dump"
    name, agents = seed(letta_postgres, letta_server_factory, fake_llm, dump)
    yield name, agents, dump
    letta_postgres.drop_database(name)
