"""Pytest side of the compatibility report: map each test to a grid cell, collect outcomes.

The cell is computed where the item lives (a worker, under xdist) and travels in the
report's ``user_properties``, so the controller can build the grid from reports alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..report.grid import Report, CheckOutcome

CELL_PROPERTY = "letta_compat_cell"
_LOG_SECTION = "server log"
NOTE_PROPERTY = "letta_compat_note"


def cell_of(item: pytest.Item) -> tuple[str, str] | None:
    """(row, column) of the grid for ``item``, or None for tests outside the matrix."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    pair = params.get("letta_code_entry")
    if pair is not None:
        return pair.server.id, pair.letta_code.id
    entry = params.get("letta_server_entry") or params.get("letta_upgrade_entry")
    if entry is None:
        return None
    marker = item.get_closest_marker("letta_check")
    return entry.id, marker.args[0] if marker and marker.args else "other"


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.failed:
            return "xpassed" if "XPASS(strict)" in str(report.longrepr) else "failed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "xpassed" if xfail else "passed"
    if report.failed:
        return "error"
    if report.skipped and report.when == "setup":
        return "xfailed" if xfail else "skipped"
    return None


class ReportCollector:
    """Registered by the plugin; gathers one ``CheckOutcome`` per matrix test."""

    def __init__(self, config: pytest.Config, matrix_path: str):
        self.config = config
        self.report = Report(matrix=matrix_path)
        self._by_id: dict[str, CheckOutcome] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        cell = cell_of(item)
        if cell is not None:
            report.user_properties.append((CELL_PROPERTY, list(cell)))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell = dict(report.user_properties).get(CELL_PROPERTY)
        outcome = _outcome(report)
        if cell is None or outcome is None:
            return
        previous = self._by_id.get(report.nodeid)
        if previous is not None and outcome == "passed":
            return  # a teardown pass never hides a call result
        message = report.longreprtext if report.failed else (
            report.wasxfail if hasattr(report, "wasxfail") else
            (report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longreprtext))
        if outcome == "passed":  # a pass can carry a note: record_property("letta_compat_note", "...")
            message = "\n".join(str(v) for k, v in report.user_properties if k == NOTE_PROPERTY)
        logs = "\n".join(text for title, text in report.sections if title.endswith(")") and _LOG_SECTION in title)
        record = CheckOutcome(nodeid=report.nodeid, row=cell[0], column=cell[1], outcome=outcome,
                             message=str(message)[-6000:], log_excerpt="\n".join(logs.splitlines()[-80:]),
                             duration=round(report.duration, 3))
        if previous is None:
            self._by_id[report.nodeid] = record
            self.report.outcomes.append(record)
        elif outcome in ("error", "failed"):  # teardown error after a pass
            previous.outcome, previous.message = outcome, record.message

    def pytest_terminal_summary(self, terminalreporter) -> None:
        lines = self.report.terminal_lines()
        if not lines:
            return
        terminalreporter.section("letta-compat compatibility grid")
        for line in lines:
            terminalreporter.write_line(line)
        target = self.config.getoption("--letta-report")
        if target:
            for path in self.report.write(Path(target)):
                terminalreporter.write_line(f"report written: {path}")
