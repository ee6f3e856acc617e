"""`letta-compat gate`: a compose bump 0.11.3 -> 0.16.2 runs that upgrade path; no bump, no run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.letta_check("upgrade")

COMPOSE = """services:
  letta:
    image: {image}
    environment:
      LETTA_PG_URI: postgresql://letta:letta@db:5432/letta
  db:
    image: pgvector/pgvector:pg15
"""

# A small suite for the gate to run: the path's schema upgrade, for real, without servers.
PATH_SUITE = """
import pytest
from pytest_letta_compat import versions

@pytest.mark.letta_check("upgrade")
def test_path_migrates(letta_upgrade_entry, letta_backend):
    letta_backend.create_database("gated", version=letta_upgrade_entry.from_version)
    letta_backend.migrate("gated", letta_upgrade_entry.to_version)
    with letta_backend.connect("gated") as conn:
        (rev,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert rev == versions.server_release(letta_upgrade_entry.to_version).alembic_head
    print("GATE-RAN", letta_upgrade_entry.id)
"""


@pytest.fixture
def repo(tmp_path, git):
    git(tmp_path, "init", "-q")
    (tmp_path / "docker-compose.letta.yml").write_text(COMPOSE.format(image="letta/letta:0.11.3"))
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_path.py").write_text(PATH_SUITE)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "pin 0.11.3")
    return tmp_path


def gate(run_gate, repo: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_gate(repo, "--compose", "docker-compose.letta.yml", "--suite", "suite", *extra, pytest_args=("-s", "-q"))


def test_a_tag_moved_from_0_11_3_to_0_16_2_runs_that_upgrade_path(repo, run_gate, letta_matrix, git):
    if letta_matrix is None or not any((u.from_version, u.to_version) == ("0.11.3", "0.16.2") for u in letta_matrix.upgrades):
        pytest.skip("the matrix does not cover the 0.11.3 -> 0.16.2 path")
    (repo / "docker-compose.letta.yml").write_text(COMPOSE.format(image="letta/letta:0.16.2"))
    git(repo, "commit", "-qam", "bump to 0.16.2")
    result = gate(run_gate, repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "moves Letta from 0.11.3 to 0.16.2" in result.stdout
    assert "GATE-RAN upgrade-0.11.3-to-0.16.2" in result.stdout
    assert "Upgrade 0.11.3 -> 0.16.2: compatible." in result.stdout


def test_an_unchanged_tag_runs_nothing(repo, run_gate, git):
    git(repo, "commit", "-q", "--allow-empty", "-m", "unrelated")
    result = gate(run_gate, repo)
    assert result.returncode == 0
    assert "unchanged (0.11.3)" in result.stdout and "GATE-RAN" not in result.stdout


def test_a_bump_to_latest_is_refused_before_anything_runs(repo, run_gate, git):
    (repo / "docker-compose.letta.yml").write_text(COMPOSE.format(image="letta/letta:latest"))
    git(repo, "commit", "-qam", "float")
    result = gate(run_gate, repo)
    assert result.returncode == 2
    assert "service `letta` runs `letta/letta:latest`" in result.stderr and "Traceback" not in result.stderr
    assert "GATE-RAN" not in result.stdout
