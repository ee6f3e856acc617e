"""The server × Letta Code axis: one test per pair with readable ids, declared pair
incompatibilities as strict xfails, the end-of-run grid, and CLI runs in failure reports.

Only letta_code_entry is used: no server is ever started here.
"""

from __future__ import annotations

import pytest

PAIRS_MATRIX = """
[[server]]
version = "0.11.3"

[[server]]
version = "0.16.2"

[[letta_code]]
version = "0.15.2"

[[letta_code]]
version = "0.25.9"

[[known_incompatibility]]
server = "<0.12"
letta_code = "<0.20"
check = "letta_code"
reason = "0.11.3 refuses letta_v1_agent (422)"
"""


@pytest.fixture
def run(pytester: pytest.Pytester, write_matrix):
    path = write_matrix("matrix", PAIRS_MATRIX)

    def run_tests(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(source)
        return pytester.runpytest_inprocess("-rxXfs", f"--letta-matrix={path}", *args)

    return run_tests


def test_pairs_get_one_id_per_server_and_letta_code_version(pytester, matrices_dir):
    pytester.makepyfile(test_pairs="def test_pair(letta_code_entry):\n    pass\n")
    result = pytester.runpytest_inprocess("--collect-only", "-q", f"--letta-matrix={matrices_dir / 'default.toml'}")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.stdout.lines if "::" in line] == [
        f"test_pairs.py::test_pair[server-{server}-letta-code-{code}]"
        for server in ("0.11.3", "0.16.2", "0.16.8") for code in ("0.25.9", "0.34.12")
    ]


def test_a_pair_shares_its_server_entry_and_xdist_group_with_the_servers_own_tests(run):
    result = run("""
        def test_pair(request, letta_code_entry, letta_server_entry):
            assert letta_code_entry.server == letta_server_entry
            assert letta_code_entry.id == request.node.callspec.id == (
                f"server-{letta_server_entry.version}-letta-code-{letta_code_entry.version}")
            assert letta_code_entry.letta_code.id == f"letta-code-{letta_code_entry.version}"
            assert request.node.get_closest_marker("xdist_group").args == (letta_server_entry.id,)
    """)
    result.assert_outcomes(passed=4)


def test_declared_pair_incompatibility_is_a_strict_xfail_for_the_matching_pairs_only(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("letta_code")
        def test_cli_turn(letta_code_entry):
            assert False, "the CLI exited 1"
    """)
    result.assert_outcomes(failed=3, xfailed=1)
    result.stdout.fnmatch_lines([
        "XFAIL *test_cli_turn[[]server-0.11.3-letta-code-0.15.2[]]*0.11.3 refuses letta_v1_agent (422)"])


def test_a_declared_pair_that_starts_working_fails_the_run_as_strict_xpass(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("letta_code")
        def test_cli_turn(letta_code_entry):
            pass
    """)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_cli_turn[[]server-0.11.3-letta-code-0.15.2[]] _*",
        "[[]XPASS(strict)[]] declared in *matrix.toml: 0.11.3 refuses letta_v1_agent (422)",
    ])


def test_declarations_without_letta_code_or_for_other_checks_match_as_written(pytester, write_matrix):
    path = write_matrix("matrix", PAIRS_MATRIX.replace('letta_code = "<0.20"\n', "") + """
[[known_incompatibility]]
letta_code = ">0.20"
check = "smoke"
reason = "a smoke declaration"
""")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.letta_check("letta_code")
        def test_cli_turn(letta_code_entry):
            assert False
    """)
    result = pytester.runpytest_inprocess("-rx", f"--letta-matrix={path}")
    # the server-only declaration covers every Letta Code on 0.11.3; the smoke one none of these
    result.assert_outcomes(failed=2, xfailed=2)
    result.stdout.fnmatch_lines(["XFAIL *server-0.11.3-letta-code-0.15.2*", "XFAIL *server-0.11.3-letta-code-0.25.9*"])


def test_grid_shows_each_pair_with_its_worst_outcome_and_the_declared_reasons(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("letta_code")
        def test_turn(letta_code_entry):
            assert (letta_code_entry.server.version, letta_code_entry.version) not in {
                ("0.11.3", "0.15.2"), ("0.16.2", "0.25.9")}

        def test_resume(letta_code_entry):
            if letta_code_entry.server.version == "0.11.3" and letta_code_entry.version == "0.25.9":
                pytest.skip("not this pair")
    """)
    result.assert_outcomes(passed=5, skipped=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines([
        "*letta-compat compatibility grid*",
        "*letta-code-0.15.2*letta-code-0.25.9*",
        "server-0.11.3  xfail*pass*",
        "server-0.16.2  pass*FAIL*",
        "cells: pass, FAIL*",
        "xfail server-0.11.3 × letta-code-0.15.2: declared in *matrix.toml: 0.11.3 refuses letta_v1_agent (422)",
    ])


def test_grid_marks_skipped_and_deselected_pairs(run):
    result = run("""
        import pytest

        def test_pair(letta_code_entry):
            pytest.skip("no reason to run")
    """, "-k", "0.15.2")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["server-0.11.3  skip*", "server-0.16.2  skip*"])
    assert "letta-code-0.25.9" not in result.stdout.str().split("compatibility grid")[1]


def test_no_grid_without_matrix_tests(run):
    result = run("def test_plain():\n    pass\n")
    result.assert_outcomes(passed=1)
    assert "compatibility grid" not in result.stdout.str()


def test_matrix_without_letta_code_skips_pair_tests_with_a_reason(pytester, write_matrix):
    path = write_matrix("servers_only", '[[server]]\nversion = "0.16.2"\n')
    pytester.makepyfile("def test_pair(letta_code_entry):\n    pass\n")
    result = pytester.runpytest_inprocess("-rs", f"--letta-matrix={path}")
    result.assert_outcomes(skipped=1)
    assert f"matrix {path} has no [[letta_code]] entries" in result.stdout.str()


def test_without_a_matrix_pair_tests_are_skipped_with_the_reason(pytester):
    pytester.makepyfile("def test_pair(letta_code_entry):\n    pass\n")
    result = pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    assert "no Letta matrix given" in result.stdout.str()


def test_failing_report_carries_each_letta_code_run_with_secrets_masked(run):
    """What the letta_code fixture records; here a conftest records it without any server."""
    result = run("""
        import pytest
        from pathlib import Path
        from pytest_letta_compat.errors import register_secret
        from pytest_letta_compat.plugin.fixtures import LETTA_CODE_RUNS_KEY
        from pytest_letta_compat.provision.letta_code import LettaCodeResult

        def test_cli_fails(request, letta_code_entry):
            register_secret("pw-0123456789")
            request.node.stash[LETTA_CODE_RUNS_KEY] = [LettaCodeResult(
                letta_code_entry.version, ("-p", "hi"), Path("/work"), 1, "",
                "Failed to connect to Letta server with pw-0123456789", 0.5)]
            assert False
    """, "-k", "0.16.2-letta-code-0.25.9")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*- Letta Code 0.25.9: letta -p hi -*",
        "$ letta -p hi   (in /work)",
        "exit code 1 after 0.5 s",
        "--- stderr ---",
        "Failed to connect to Letta server with ***",
    ])
    assert "pw-0123456789" not in result.stdout.str()
