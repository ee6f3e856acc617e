"""``--letta-suite`` collects the compatibility suite shipped in the package into any repo's
run, with short stable ids; ``--letta-checks`` / ``--letta-skip-checks`` select by check name."""

from __future__ import annotations

import re

import pytest

from pytest_letta_compat.matrix.model import CHECKS
from pytest_letta_compat.plugin.suite_collector import SUITE_DIR

SHIPPED = sorted(p.name for p in SUITE_DIR.glob("test_*.py"))


@pytest.fixture
def repo(pytester, matrices_dir):
    """An operator's repo: one test of their own and the default matrix (no server starts at --co)."""
    pytester.makepyfile(test_mine="def test_my_own_check(letta_server_entry):\n    pass\n")
    pytester.makefile(".toml", **{"letta-matrix": (matrices_dir / "default.toml").read_text()})
    return pytester


def collected(result) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line]


def test_the_suite_is_collected_beside_the_repos_own_tests_with_short_ids(repo):
    result = repo.runpytest("--letta-matrix", "letta-matrix.toml", "--letta-suite", "--co", "-q")
    ids = collected(result)
    assert any(i.startswith("test_mine.py::test_my_own_check[") for i in ids)
    files = {i.split("::")[0] for i in ids if i.startswith("letta-suite/")}
    assert files == {f"letta-suite/{name}" for name in SHIPPED}
    assert len(ids) == len(set(ids))  # every test id is unique


def test_without_the_flag_only_the_repos_tests_run(repo):
    ids = collected(repo.runpytest("--letta-matrix", "letta-matrix.toml", "--co", "-q"))
    assert ids and all(i.startswith("test_mine.py::") for i in ids)


def test_the_ini_key_switches_it_on(repo):
    repo.makeini("[pytest]\nletta_suite = true\n")
    ids = collected(repo.runpytest("--letta-matrix", "letta-matrix.toml", "--co", "-q"))
    assert any(i.startswith("letta-suite/test_smoke.py::") for i in ids)


def test_checks_are_kept_or_left_out_by_name(repo):
    only = collected(repo.runpytest("--letta-matrix", "letta-matrix.toml", "--letta-suite", "--co", "-q",
                                    "--letta-checks", "smoke,schema", "--letta-skip-checks", "schema"))
    assert only and {re.match(r"letta-suite/(test_\w+)\.py", i).group(1) for i in only} == {"test_smoke"}


def test_an_unknown_check_name_is_one_usage_error(repo):
    result = repo.runpytest("--letta-matrix", "letta-matrix.toml", "--letta-suite", "--letta-checks", "smok")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--letta-checks: unknown check name(s) smok. Allowed: {', '.join(CHECKS)}." in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
