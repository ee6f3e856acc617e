"""Progress of long work (installs, npm, alembic runs, image builds, lock waits), pytest-free.

The core calls ``phase("installing Letta 0.16.8")`` around anything that may take more than
a few seconds; whoever runs the core decides where the lines go: the pytest plugin routes
them to the terminal reporter (hidden by -q), the CLI to stderr.  With no sink set, nothing
is printed.  A phase prints a line when it starts and one with its elapsed time when it ends,
so fifteen silent minutes of npm become two lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[str], None]
_sinks: list[Sink] = []
_lock = threading.Lock()


def add_sink(sink: Sink) -> None:
    with _lock:
        _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    with _lock:
        if sink in _sinks:
            _sinks.remove(sink)


@contextmanager
def reporting_to(sink: Sink) -> Iterator[None]:
    add_sink(sink)
    try:
        yield
    finally:
        remove_sink(sink)


def emit(message: str) -> None:
    """One progress line to every sink; a failing sink never fails the work."""
    with _lock:
        sinks = list(_sinks)
    for sink in sinks:
        try:
            sink(message)
        except Exception:  # noqa: BLE001 - progress is a courtesy
            pass


def _seconds(elapsed: float) -> str:
    return f"{elapsed:.1f} s" if elapsed < 120 else f"{int(elapsed // 60)} min {int(elapsed % 60)} s"


@contextmanager
def phase(what: str, *, done: str | None = None) -> Iterator[None]:
    """``what …`` now, then ``what: done in 12.3 s`` (or ``failed after``) when it ends."""
    started = time.monotonic()
    emit(f"{what} …")
    try:
        yield
    except BaseException:
        emit(f"{what}: failed after {_seconds(time.monotonic() - started)}")
        raise
    emit(f"{what}: {done or 'done'} in {_seconds(time.monotonic() - started)}")


def bar(done: int, total: int, width: int = 20) -> str:
    """``[#####-----] 5/10`` for work whose length is known."""
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"
