"""Issue 13: options a run would only trip over later are refused when pytest starts, as
one UsageError (exit 4) naming the option; --help works whatever $LETTA_MATRIX names."""

from __future__ import annotations

import pytest

TEST = "def test_one(letta_server):\n    pass\n\ndef test_two(letta_server):\n    pass\n"


def refused(result, text: str) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    err = result.stderr.str()
    assert err.count(text) == 1, err
    assert "Traceback" not in err + result.stdout.str()
    result.stdout.no_fnmatch_line("*passed*")
    return err


def test_cache_dir_that_cannot_be_created(pytester, matrices_dir):
    pytester.makepyfile(TEST)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}", "--letta-cache-dir=/proc/nope")
    refused(result, "The cache directory /proc/nope cannot be created")


def test_cache_dir_from_the_environment(pytester, matrices_dir, monkeypatch):
    pytester.makepyfile(TEST)
    monkeypatch.setenv("LETTA_COMPAT_CACHE", "/proc/nope")
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}")
    refused(result, "The cache directory /proc/nope cannot be created")


def test_report_path_that_cannot_be_written_is_refused_before_the_run(pytester, matrices_dir):
    pytester.makepyfile(TEST)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}", "--letta-report=/proc/nope/r")
    refused(result, "--letta-report /proc/nope/r.json: cannot create anything in /proc")


def test_report_path_that_is_a_directory(pytester, matrices_dir):
    pytester.makepyfile(TEST)
    pytester.mkdir("out.json")
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}", "--letta-report=out.json")
    refused(result, "--letta-report out.json: is a directory")


def test_unknown_backend_is_one_usage_error(pytester, matrices_dir):
    pytester.makepyfile(TEST)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}", "--letta-backend=bogus")
    refused(result, "--letta-backend 'bogus' is not a backend. Allowed: native, docker.")


def test_start_timeout_in_the_ini_file_that_is_not_a_number(pytester, matrices_dir):
    pytester.makepyfile(TEST)
    pytester.makeini("[pytest]\nletta_start_timeout = soon\n")
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}")
    refused(result, "the letta_start_timeout ini key is 'soon'")


@pytest.mark.parametrize("text", ["", "# nothing yet\nname = \"mine\"\n", "[[letta_code]]\nversion = \"0.25.9\"\n"],
                         ids=["empty", "name-only", "letta-code-only"])
def test_a_matrix_that_tests_nothing_is_refused(pytester, write_matrix, text):
    pytester.makepyfile(TEST)
    path = write_matrix("empty", text)
    result = pytester.runpytest_inprocess(f"--letta-matrix={path}")
    refused(result, "the matrix has no [[server]] and no [[upgrade]] entry, so nothing would be tested")


def test_help_works_when_letta_matrix_names_a_missing_file(pytester, monkeypatch):
    monkeypatch.setenv("LETTA_MATRIX", "/nonexistent/matrix.toml")
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--letta-matrix=PATH*"])
    assert pytester.runpytest_inprocess("--version").ret == 0


def test_the_missing_matrix_is_still_refused_for_a_real_run(pytester, monkeypatch):
    pytester.makepyfile(TEST)
    monkeypatch.setenv("LETTA_MATRIX", "/nonexistent/matrix.toml")
    result = pytester.runpytest_inprocess()
    refused(result, "/nonexistent/matrix.toml: the matrix file cannot be read")
