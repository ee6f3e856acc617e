"""A server a test is done with stops in the background, and the session still waits for it:
the test goes on at once, and PostgreSQL is never stopped under a server still shutting down."""

from __future__ import annotations

import threading
import time

from pytest_letta_compat.backends.native import NativeBackend


class SlowStack:
    """Stands in for a Letta server that takes a while to shut down."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.stopped = threading.Event()

    def stop(self) -> None:
        time.sleep(self.seconds)
        self.stopped.set()


def test_stop_soon_returns_at_once_and_the_backend_waits_for_it(tmp_path):
    backend = NativeBackend(cache=tmp_path / "cache", workdir=tmp_path / "work")
    stack = SlowStack(0.5)
    started = time.monotonic()
    backend.stop_soon(stack)
    assert time.monotonic() - started < 0.2  # the caller does not wait for the shutdown
    assert not stack.stopped.is_set()
    backend.stop()  # as at session end: every background stop is done first
    assert stack.stopped.is_set()
