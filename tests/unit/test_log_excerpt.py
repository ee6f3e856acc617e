"""The failure report's log excerpt: errors and the lines around them first, warnings folded."""

from __future__ import annotations

from pytest_letta_compat.provision.logexcerpt import excerpt

SITE = "/cache/servers/0.16.8/lib/python3.11/site-packages"
WARNINGS = [
    f"12:00:00.001 {SITE}/websockets/legacy/__init__.py:6: DeprecationWarning: websockets.legacy is deprecated",
    "12:00:00.002   warnings.warn(  # deprecated in 14.0 - 2024-11-09",
    f"12:00:00.003 {SITE}/fastapi/openapi/utils.py:252: UserWarning: Duplicate Operation ID x",
    "12:00:00.004   warnings.warn(message, stacklevel=1)",
    "12:00:00.005 Letta.letta.orm.sqlalchemy_base - WARNING - SECURITY: Listing org-scoped model Provider without actor.",
]


def test_an_error_and_its_traceback_come_first_and_warnings_become_a_count():
    lines = ([f"12:00:00.{i:03d} INFO: starting {i}" for i in range(100)] + WARNINGS * 40
             + ["12:00:01.000 INFO: before the failure",
                "12:00:01.001 Traceback (most recent call last):",
                '12:00:01.002   File "asyncpg/connect_utils.py", line 977, in _create_ssl_connection',
                "12:00:01.003     do_ssl_upgrade = await pr.on_data",
                "12:00:01.004 asyncio.exceptions.CancelledError",
                '12:00:01.005 INFO:     127.0.0.1:5 - "POST /v1/agents/agent-1/archival-memory HTTP/1.1" 500 Internal Server Error']
             + WARNINGS * 40 + [f"12:00:02.{i:03d} INFO: later {i}" for i in range(100)])
    text = excerpt("\n".join(lines), max_lines=80, tail=20)
    out = text.splitlines()
    assert len(out) <= 80
    assert out[0] == "--- errors and the lines around them ---"
    first = "\n".join(out[:15])
    for needed in ("before the failure", "Traceback", "_create_ssl_connection", "CancelledError", "500 Internal"):
        assert needed in first
    assert "DeprecationWarning" not in "\n".join(out[:-1]) and "warnings.warn" not in text
    assert out[-1] == ("--- 400 warnings folded: DeprecationWarning x80, UserWarning x80, logged WARNING x80 ---"
                       .replace("400", "240"))
    assert "later 99" in text  # the end of the log is there too


def test_a_clean_log_is_its_tail_without_warnings():
    lines = WARNINGS + [f"INFO: line {i}" for i in range(10)]
    out = excerpt("\n".join(lines), tail=5).splitlines()
    assert out == [f"INFO: line {i}" for i in range(5, 10)] + [
        "--- 3 warnings folded: DeprecationWarning x1, UserWarning x1, logged WARNING x1 ---"]


def test_an_empty_log_gives_an_empty_excerpt():
    assert excerpt("") == ""
