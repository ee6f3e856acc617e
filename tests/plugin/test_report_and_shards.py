"""--letta-report writes the grid the run really had; --letta-shard splits entries across jobs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MATRIX = """
[[server]]
version = "0.11.3"

[[server]]
version = "0.16.2"

[[upgrade]]
from = "0.11.3"
to = "0.16.2"

[[known_incompatibility]]
server = "<0.12"
check = "api"
reason = "0.11 has no conversations"
"""

TESTS = """
import pytest

@pytest.mark.letta_check("smoke")
def test_smoke(letta_server_entry):
    assert letta_server_entry.version != "0.16.2", "boom on 0.16.2"

@pytest.mark.letta_check("api")
def test_api(letta_server_entry):
    assert letta_server_entry.version != "0.11.3"

@pytest.mark.letta_check("upgrade")
def test_upgrade(letta_upgrade_entry):
    pass
"""


@pytest.fixture
def matrix(write_matrix):
    return write_matrix("matrix", MATRIX)


def test_json_report_matches_the_test_outcomes(pytester, matrix):
    pytester.makepyfile(test_entries=TESTS)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrix}", "--letta-report=out")
    result.assert_outcomes(passed=3, failed=1, xfailed=1)
    doc = json.loads((pytester.path / "out.json").read_text())
    assert doc["grid"] == {
        "server-0.11.3": {"smoke": "passed", "api": "xfailed", "upgrade": None},
        "server-0.16.2": {"smoke": "failed", "api": "passed", "upgrade": None},
        "upgrade-0.11.3-to-0.16.2": {"smoke": None, "api": None, "upgrade": "passed"},
    }
    assert doc["ok"] is False
    assert "boom on 0.16.2" in next(t["message"] for t in doc["tests"] if t["outcome"] == "failed")
    assert '<table id="grid">' in (pytester.path / "out.html").read_text()
    assert "| server-0.16.2 | ❌ fail |" in (pytester.path / "out.md").read_text()


def test_shards_split_entries_without_overlap_and_merge_back(pytester, matrix):
    pytester.makepyfile(test_entries=TESTS, test_plain="def test_outside_the_matrix():\n    pass\n")
    ran = []
    for k in (1, 2):
        result = pytester.runpytest_inprocess(f"--letta-matrix={matrix}", f"--letta-shard={k}/2",
                                              f"--letta-report=shard{k}.json", "-q")
        ran.append({r.nodeid for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"})
    assert ran[0] and ran[1] and not ran[0] & ran[1]
    assert len(ran[0] | ran[1]) == 6  # 5 matrix tests + 1 plain test, each run exactly once
    assert sum("test_outside_the_matrix" in n for n in ran[0]) == 1  # plain tests: shard 1 only
    merged = subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", "report", "merge",
                             "shard1.json", "shard2.json", "--out", "all.json"],
                            cwd=pytester.path, capture_output=True, text=True)
    assert merged.returncode == 1  # the merged report still knows 0.16.2's smoke check failed
    assert json.loads((pytester.path / "all.json").read_text())["grid"]["server-0.16.2"]["smoke"] == "failed"


def test_a_malformed_shard_is_a_usage_error(pytester, matrix):
    pytester.makepyfile(test_entries=TESTS)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrix}", "--letta-shard=3/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --letta-shard '3/2' is not allowed*"])
