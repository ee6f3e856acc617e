"""A failing test that used a server gets that server's log in its report, secrets masked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.letta_check("smoke")


def test_failing_test_report_carries_the_server_log_without_the_password(pytester, letta_matrix, letta_backend):
    if letta_matrix is None or not letta_matrix.servers:
        pytest.skip("needs a matrix with at least one [[server]] entry")
    version = letta_matrix.servers[-1].version
    pytester.makefile(".toml", matrix=f'[[server]]\nversion = "{version}"\nsecure = true\n')
    pytester.makepyfile(test_inner="""
        def test_sees_the_server_then_fails(letta_server, letta_client):
            assert letta_client.get("/v1/agents/").status_code == 200
            print("PASSWORD-IS", letta_server.password)
            assert False, "deliberate failure"
    """)
    result = pytester.runpytest_subprocess("--letta-matrix", "matrix.toml", "--letta-cache-dir", str(letta_backend.cache))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"Letta {version} server log" in out
    assert "Uvicorn running on" in out
    # the whole log is kept where the report says; Letta's own line about its password is masked there
    copied = Path(re.search(rf"Letta {re.escape(version)} server log \((\S+)\)", out).group(1))
    assert "Using secure mode with password: ***" in copied.read_text()
    # the test printed the password itself: it is masked in the captured output section too
    assert "PASSWORD-IS ***" in out
