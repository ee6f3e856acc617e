"""Routes the core's progress lines (installs, alembic, lock waits, image builds) to pytest's
terminal: ``letta-compat: installing Letta 0.16.8 …``. Hidden with -q; under xdist the
workers' lines are not shown (the controller has the terminal). A background thread's lines
wait for the main thread's next test."""

from __future__ import annotations

import threading
from collections import deque

import pytest

from .. import progress


class ProgressReporter:
    def __init__(self, config: pytest.Config):
        self.config = config
        self._sink = None
        self._show = None
        self._later: deque[str] = deque()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or self.config.get_verbosity() < 0:
            return

        capture = self.config.pluginmanager.get_plugin("capturemanager")

        def show(message: str) -> None:
            # a phase often runs inside a test's setup, whose output pytest captures
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    terminal.write_line(f"letta-compat: {message}")
            else:
                terminal.write_line(f"letta-compat: {message}")

        def write(message: str) -> None:
            if threading.current_thread() is threading.main_thread():
                self.flush()
                show(message)
            else:  # installs and prestarts ahead (plugin/prestart.py): pytest's capture is not
                self._later.append(message)  # thread-safe, so the main thread writes it, next test

        self._show = show
        self._sink = write
        progress.add_sink(write)

    def flush(self) -> None:
        """Write the lines background threads left (on the main thread, between tests)."""
        while self._later and self._show is not None:
            self._show(self._later.popleft())

    def pytest_runtest_logstart(self) -> None:
        self.flush()

    def pytest_sessionfinish(self) -> None:
        self.flush()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sink is not None:
            progress.remove_sink(self._sink)
            self._sink = None


def register(config: pytest.Config) -> None:
    config.pluginmanager.register(ProgressReporter(config), "letta-compat-progress")
