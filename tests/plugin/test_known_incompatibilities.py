"""[[known_incompatibility]] declarations turn matching checks into strict xfails, nothing else.

Only letta_server_entry / letta_upgrade_entry are used: no server is ever started here.
"""

from __future__ import annotations

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
check = "smoke"
reason = "0.11.3 reports no version on /v1/health"

[[known_incompatibility]]
server = ">=0.16,<0.16.3"
check = "upgrade"
reason = "0.16.2 migrations drop the old sources"
"""


@pytest.fixture
def run(pytester: pytest.Pytester, write_matrix):
    path = write_matrix("matrix", MATRIX)

    def run_tests(source: str) -> pytest.RunResult:
        pytester.makepyfile(source)
        return pytester.runpytest_inprocess("-rxXf", f"--letta-matrix={path}")

    return run_tests


def test_failing_check_on_a_declared_version_is_xfailed_with_the_reason(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("smoke")
        def test_smoke(letta_server_entry):
            assert letta_server_entry.version != "0.11.3"
    """)
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL *test_smoke[[]server-0.11.3[]]*0.11.3 reports no version on /v1/health"])


def test_check_that_passes_on_a_declared_version_fails_the_run_as_strict_xpass(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("smoke")
        def test_smoke(letta_server_entry):
            pass
    """)
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ test_smoke[[]server-0.11.3[]] _*",
        "[[]XPASS(strict)[]] declared in *matrix.toml: 0.11.3 reports no version on /v1/health",
    ])


def test_other_checks_unmarked_tests_and_other_versions_fail_normally(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("schema")
        def test_schema(letta_server_entry):
            assert False

        def test_unmarked(letta_server_entry):
            assert False

        @pytest.mark.letta_check("smoke")
        def test_smoke_breaks_everywhere(letta_server_entry):
            assert False
    """)
    result.assert_outcomes(failed=5, xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL *test_smoke_breaks_everywhere[[]server-0.11.3[]]*"])


def test_upgrade_entries_are_matched_on_their_target_version(run):
    result = run("""
        import pytest

        @pytest.mark.letta_check("upgrade")
        def test_upgrade(letta_upgrade_entry):
            assert False
    """)
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL *upgrade-0.11.3-to-0.16.2*0.16.2 migrations drop the old sources"])


@pytest.mark.parametrize("args", ['"smok"', ""])
def test_a_misspelt_or_empty_check_marker_is_a_usage_error(run, args):
    result = run(f"""
        import pytest

        @pytest.mark.letta_check({args})
        def test_smoke(letta_server_entry):
            pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *letta_check takes one check name*Allowed: smoke, schema*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
