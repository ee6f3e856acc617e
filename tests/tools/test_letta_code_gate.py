"""`letta-compat gate` on a Letta Code bump: a repository whose package.json moves
@letta-ai/letta-code runs the new Letta Code against the server its compose file pins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.letta_check("letta_code")


def package_json(version: str) -> str:
    return json.dumps({"name": "ops", "private": True, "dependencies": {"@letta-ai/letta-code": version}}, indent=2)


@pytest.fixture
def repo(tmp_path, git):
    git(tmp_path, "init", "-q")
    (tmp_path / "docker-compose.yml").write_text("services:\n  letta:\n    image: letta/letta:0.16.8\n")
    (tmp_path / "package.json").write_text(package_json("0.25.9"))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "Letta Code 0.25.9 on Letta 0.16.8")
    return tmp_path


def gate(run_gate, repo: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_gate(repo, "--compose", "docker-compose.yml", "--report", "gate-report.json", *extra,
                    pytest_args=("-q", "-k", "headless_turn or resumes_by_id"))


def test_a_package_json_bump_runs_the_new_letta_code_against_the_pinned_server(repo, run_gate, git):
    (repo / "package.json").write_text(package_json("0.34.12"))
    git(repo, "commit", "-qam", "bump Letta Code")
    result = gate(run_gate, repo)
    said = result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 0, said
    assert ("Letta Code moves from 0.25.9 to 0.34.12 (package.json): running it against Letta 0.16.8, "
            "the version the compose file pins.") in result.stdout
    assert "Letta Code 0.25.9 -> 0.34.12 on Letta 0.16.8: compatible." in result.stdout
    report = json.loads((repo / "gate-report.json").read_text())
    cells = {(t["row"], t["column"], t["outcome"]) for t in report["tests"]}
    assert cells == {("server-0.16.8", "letta-code-0.34.12", "passed")}, cells
    assert len(report["tests"]) == 2


def test_an_unchanged_pin_and_image_run_nothing(repo, run_gate, git):
    git(repo, "commit", "-q", "--allow-empty", "-m", "unrelated")
    result = gate(run_gate, repo)
    assert result.returncode == 0 and "unchanged (0.16.8)" in result.stdout
    assert "Letta Code moves" not in result.stdout
