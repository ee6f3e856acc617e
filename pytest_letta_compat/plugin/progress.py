"""Routes the core's progress lines (installs, alembic, lock waits, image builds) to pytest's
terminal: ``letta-compat: installing Letta 0.16.8 …``. Hidden with -q; under xdist the
workers' lines are not shown (the controller has the terminal)."""

from __future__ import annotations

import pytest

from .. import progress


class ProgressReporter:
    def __init__(self, config: pytest.Config):
        self.config = config
        self._sink = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or self.config.get_verbosity() < 0:
            return

        capture = self.config.pluginmanager.get_plugin("capturemanager")

        def write(message: str) -> None:
            # a phase often runs inside a test's setup, whose output pytest captures
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    terminal.write_line(f"letta-compat: {message}")
            else:
                terminal.write_line(f"letta-compat: {message}")

        self._sink = write
        progress.add_sink(write)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sink is not None:
            progress.remove_sink(self._sink)
            self._sink = None


def register(config: pytest.Config) -> None:
    config.pluginmanager.register(ProgressReporter(config), "letta-compat-progress")
