"""Which matrix a run uses: --letta-matrix, then $LETTA_MATRIX, then the letta_matrix ini key."""

from __future__ import annotations

import pytest


@pytest.fixture
def three_matrices(pytester: pytest.Pytester, write_matrix, entry_tests):
    """One matrix per source, each with a different server so the choice is visible."""
    cli = write_matrix("cli", '[[server]]\nversion = "0.16.8"\n')
    env = write_matrix("env", '[[server]]\nversion = "0.16.2"\n')
    pytester.mkdir("matrices")
    ini = write_matrix("matrices/ini", '[[server]]\nversion = "0.11.3"\n')
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nletta_matrix = "matrices/ini.toml"\n')
    return cli, env, ini


def assert_chosen(result: pytest.RunResult, path, source: str, version: str) -> None:
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([
        f"letta-compat: matrix {path} ({source}): servers {version}; *",
        f"*<Function test_server[[]server-{version}]>",
    ])
    assert result.stdout.str().count("<Function test_server[") == 1


def test_cli_option_beats_env_var_and_ini_key(pytester, three_matrices, monkeypatch):
    cli, env, _ = three_matrices
    monkeypatch.setenv("LETTA_MATRIX", str(env))
    result = pytester.runpytest_inprocess("--collect-only", f"--letta-matrix={cli}")
    assert_chosen(result, cli, "--letta-matrix", "0.16.8")


def test_env_var_beats_ini_key(pytester, three_matrices, monkeypatch):
    _, env, _ = three_matrices
    monkeypatch.setenv("LETTA_MATRIX", str(env))
    result = pytester.runpytest_inprocess("--collect-only")
    assert_chosen(result, env, "$LETTA_MATRIX", "0.16.2")


def test_ini_key_is_used_last_and_resolved_against_the_rootdir(pytester, three_matrices, monkeypatch):
    _, _, ini = three_matrices
    sub = pytester.mkdir("sub")
    (sub / "test_sub.py").write_text("def test_server(letta_server_entry):\n    pass\n")
    monkeypatch.chdir(sub)  # matrices/ini.toml does not exist relative to the cwd
    result = pytester.runpytest_inprocess("--collect-only")
    assert_chosen(result, ini, "letta_matrix ini key", "0.11.3")


def test_without_any_matrix_entry_tests_are_skipped_with_a_hint(pytester, entry_tests):
    result = pytester.runpytest_inprocess("-rs")
    result.stdout.fnmatch_lines(["letta-compat: no matrix (use --letta-matrix PATH)"])
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED *no Letta matrix given (--letta-matrix, $LETTA_MATRIX*"])


def test_matrix_error_names_the_source_of_the_choice(pytester, write_matrix, monkeypatch):
    bad = write_matrix("bad", 'backend = "kubernetes"\n')
    monkeypatch.setenv("LETTA_MATRIX", str(bad))
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *bad.toml*(matrix chosen by $LETTA_MATRIX)"])
