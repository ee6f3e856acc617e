"""A failing test's server logs are copied out of pytest's rotating basetemp to a folder the
report names, and the report's excerpt puts the errors first and folds the warnings.

The stack here is a recorded log file behind the LettaStack interface: what is under test is
the plugin's copying and filtering, not a server (tests/tools/test_failure_reports.py runs
the same path against a real one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

INNER = '''
import pytest
from pathlib import Path
from pytest_letta_compat.backends.base import LettaStack
from pytest_letta_compat.errors import register_secret

LOG = """12:00:00.001 /venv/site-packages/websockets/legacy/__init__.py:6: DeprecationWarning: websockets.legacy is deprecated
12:00:00.002   warnings.warn(  # deprecated in 14.0 - 2024-11-09
12:00:00.003 Letta.letta.orm.sqlalchemy_base - WARNING - SECURITY: Listing org-scoped model Provider without actor.
12:00:00.004 INFO:     Uvicorn running on http://127.0.0.1:8283
12:00:01.000 Traceback (most recent call last):
12:00:01.001   File "asyncpg/connect_utils.py", line 977, in _create_ssl_connection
12:00:01.002 asyncio.exceptions.CancelledError
12:00:01.003 INFO:     127.0.0.1:5 - "POST /v1/agents/a/archival-memory HTTP/1.1" 500 Internal Server Error
12:00:01.004 DSN postgresql://letta:hunter2-secret@127.0.0.1:5432/letta
""" + "\\n".join(f"12:00:02.{i:03d} /x.py:{i}: DeprecationWarning: noise {i}" for i in range(300)) + "\\n" + "\\n".join(
    f"12:00:03.{i:03d} INFO:     127.0.0.1:5 - GET /v1/health/ 200 OK {i}" for i in range(60))


class RecordedStack(LettaStack):
    version, url, database, password, started_in = "0.16.8", "http://127.0.0.1:9", "db", None, 1.0

    def __init__(self, log_path):
        self.log_path = log_path
    dsn = "postgresql://letta:***@127.0.0.1:9/db"
    def connect(self): raise NotImplementedError
    def log_tail(self, lines=200): return "\\n".join(self.log_path.read_text().splitlines()[-lines:])
    def stop(self): pass
    def running(self): return True


@pytest.fixture
def recorded_stack(tmp_path):
    path = tmp_path / "server" / "letta-server.log"
    path.parent.mkdir()
    path.write_text(LOG)
    return RecordedStack(path)


@pytest.mark.letta_check("smoke")
def test_fails(letta_server_entry, recorded_stack):
    assert False, "deliberate failure"
'''

MATRIX = '[[server]]\nversion = "0.16.8"\n'


def _inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makefile(".toml", matrix=MATRIX)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("--letta-matrix", "matrix.toml", "-o", "letta_suite=false", *args)
    result.assert_outcomes(failed=1)
    return result


def _copies(root: Path) -> list[Path]:
    return sorted(root.rglob("letta-0.16.8-*.log"))


def test_logs_are_copied_to_the_named_folder_and_the_report_links_them(pytester: pytest.Pytester, tmp_path):
    logs = tmp_path / "kept-logs"
    result = _inner(pytester, "--letta-logs", str(logs), "--letta-report", str(tmp_path / "grid.json"))
    (copy,) = _copies(logs)
    assert copy.parent.name == "test_inner.py_test_fails_server-0.16.8"
    text = copy.read_text()
    assert "_create_ssl_connection" in text and "noise 299" in text  # the whole log
    assert "hunter2-secret" not in text
    out = result.stdout.str()
    assert f"Letta 0.16.8 server log ({copy})" in out
    (outcome,) = json.loads((tmp_path / "grid.json").read_text())["tests"]
    excerpt = outcome["log_excerpt"]
    assert str(copy) in excerpt
    lines = excerpt.splitlines()
    assert lines[1] == "--- errors and the lines around them ---"
    assert "CancelledError" in "\n".join(lines[:10]) and "500 Internal Server Error" in "\n".join(lines[:12])
    assert "DeprecationWarning" not in "\n".join(lines[:-1])
    assert lines[-1].startswith("--- 302 warnings folded: DeprecationWarning x301, logged WARNING x1")
    assert "hunter2-secret" not in excerpt


def test_by_default_logs_go_beside_the_report(pytester: pytest.Pytester, tmp_path):
    _inner(pytester, "--letta-report", str(tmp_path / "out" / "grid.json"))
    assert len(_copies(tmp_path / "out" / "grid-logs")) == 1


def test_without_a_report_logs_go_under_the_cache(pytester: pytest.Pytester, tmp_path):
    result = _inner(pytester, "--letta-cache-dir", str(tmp_path / "cache"))
    (copy,) = _copies(tmp_path / "cache" / "logs")
    assert str(copy) in result.stdout.str()


def test_the_ini_key_names_the_folder(pytester: pytest.Pytester, tmp_path):
    pytester.makeini(f"[pytest]\nletta_logs = {tmp_path / 'from-ini'}\n")
    _inner(pytester)
    assert len(_copies(tmp_path / "from-ini")) == 1
