"""Pytest side of the compatibility report: map each test to a grid cell, collect outcomes.

The cell is computed where the item lives (a worker, under xdist) and travels in the
report's ``user_properties``, so the controller can build the grid from reports alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from ..cache import cache_root
from ..errors import LettaCompatError, redact
from ..paths import keep_masked
from ..provision.logexcerpt import excerpt
from ..report.grid import Report, CheckOutcome
from . import settings

CELL_PROPERTY = "letta_compat_cell"
REHEARSAL_PROPERTY = "letta_compat_rehearsal"  # a [[rehearsal]]'s report, to join the grid's HTML
_LOG_SECTION = "server log"
NOTE_PROPERTY = "letta_compat_note"
_LOGS_DIR_KEY = pytest.StashKey[Path]()
EXCERPT_LINES = 120
_STARTED = time.time()


def logs_dir(config: pytest.Config) -> Path:
    """Where a failing test's server logs are copied, outside pytest's rotating basetemp:
    --letta-logs, the letta_logs ini key, beside --letta-report (``<report>-logs/``), or
    ``<cache>/logs/<session start>/``. One folder per session (shared by xdist workers)."""
    if _LOGS_DIR_KEY in config.stash:
        return config.stash[_LOGS_DIR_KEY]
    chosen = settings.of(config)
    if chosen.logs:
        base = Path(chosen.logs)
    elif chosen.report:
        report = Path(chosen.report)
        base = report.with_name(report.name.removesuffix(report.suffix) + "-logs")
    else:
        cache = chosen.cache_dir
        run = getattr(config, "workerinput", {}).get("testrunuid") or f"{os.getpid()}"
        base = cache_root(cache) / "logs" / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(_STARTED))}-{run[:8]}"
    config.stash[_LOGS_DIR_KEY] = base
    return base


def _safe(nodeid: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", nodeid).strip("_")
    return name if len(name) <= 120 else name[:100] + "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:12]


def server_log_section(config: pytest.Config, nodeid: str, stack) -> tuple[str, str]:
    """(title, excerpt) of ``stack``'s log for the report of the failing test ``nodeid``; the
    whole log is copied first to a folder that outlives basetemp, and the title names it."""
    source = Path(stack.log_path)
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = stack.log_tail(200)
    where = source
    try:
        where = keep_masked(text, logs_dir(config) / _safe(nodeid) /
                            f"letta-{stack.version}-{source.parent.name}-{source.name}")
    except (OSError, LettaCompatError) as exc:  # an unwritable folder must not hide the failure
        text += f"\n(could not copy this log to the logs folder: {exc})"
    return f"Letta {stack.version} server log ({where})", excerpt(redact(text), max_lines=EXCERPT_LINES)


class Prestarted(NamedTuple):
    """A server started ahead, in the background (plugin/prestart.py): nobody waited for its
    start but the test that took it, and that one only for ``waited`` seconds of it."""

    nodeid: str | None = None  # the test that took it (None: nobody did)
    phase: str | None = None
    waited: float = 0.0


def server_start_line(stack, started_by) -> str:
    """The terminal section's line for one server start, and which test phase waited for it:
    ``(nodeid, phase)``, a ``Prestarted``, or None. benchmarks/bench_suite.py parses it (HEALTHY):
    it takes from that phase's duration what it waited (all of a start; of a prestarted one, the
    ``waited`` seconds only), so change both together."""
    line = f"Letta {stack.version} healthy {stack.started_in:.1f} s after its start ({stack.url}"
    if isinstance(started_by, Prestarted):
        if started_by.nodeid is None:
            return line + "; prestarted, never used)"
        if started_by.waited < 0.05:
            return line + f"; prestarted, ready before the {started_by.phase} of {started_by.nodeid})"
        return line + (f"; prestarted, {started_by.waited:.1f} s of it waited for in the {started_by.phase} "
                       f"of {started_by.nodeid})")
    if started_by:
        return line + f"; in the {started_by[1]} of {started_by[0]})"
    return line + ")"


def cell_of(item: pytest.Item) -> tuple[str, str] | None:
    """(row, column) of the grid for ``item``, or None for tests outside the matrix."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    pair = params.get("letta_code_entry")
    if pair is not None:
        return pair.server.id, pair.letta_code.id
    entry = params.get("letta_server_entry") or params.get("letta_upgrade_entry") or params.get("letta_rehearsal_entry")
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
        rehearsal = getattr(item, "funcargs", {}).get("letta_rehearsal")
        if (report.when == "call" and rehearsal is not None and settings.of(self.config).report
                and isinstance(getattr(rehearsal, "report", None), dict)):
            # the report's JSON (no secret in it) travels with the test's report, from an xdist worker too
            entry = getattr(getattr(item, "callspec", None), "params", {}).get("letta_rehearsal_entry")
            report.user_properties.append((REHEARSAL_PROPERTY, {**rehearsal.report,
                                                                "entry": getattr(entry, "id", item.nodeid)}))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rehearsal = dict(report.user_properties).get(REHEARSAL_PROPERTY)
        if isinstance(rehearsal, dict) and all(r.get("entry") != rehearsal.get("entry") for r in self.report.rehearsals):
            self.report.rehearsals.append(rehearsal)
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
        logs = "\n".join(f"{title}\n{text}" for title, text in report.sections
                         if title.endswith(")") and _LOG_SECTION in title)
        record = CheckOutcome(nodeid=report.nodeid, row=cell[0], column=cell[1], outcome=outcome,
                             message=str(message)[-6000:], log_excerpt="\n".join(logs.splitlines()[:EXCERPT_LINES]),
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
        target = settings.of(self.config).report
        if target:
            for path in self.report.write(Path(target)):
                terminalreporter.write_line(f"report written: {path}")
