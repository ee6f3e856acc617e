"""Where installed Letta versions, migration scripts and Letta Code builds are kept.

Shared by every run on the machine (concurrent runs and xdist workers take file locks);
chosen by --letta-cache-dir, then LETTA_COMPAT_CACHE, then the platform's user cache directory
(platformdirs: ~/.cache/pytest-letta-compat on Linux, honouring $XDG_CACHE_HOME).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import platformdirs
from filelock import FileLock

from .errors import LettaCompatError

ENV_VAR = "LETTA_COMPAT_CACHE"


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        root = Path(explicit)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:  # ~/.cache/pytest-letta-compat on Linux ($XDG_CACHE_HOME), ~/Library/Caches/... on macOS
        root = Path(platformdirs.user_cache_dir("pytest-letta-compat", appauthor=False))
    root = root.expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LettaCompatError(
            f"The cache directory {root} cannot be created ({exc.strerror or exc}). Give a writable directory "
            f"with --cache-dir / --letta-cache-dir or ${ENV_VAR} (default ~/.cache/pytest-letta-compat).") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise LettaCompatError(
            f"The cache directory {root} is not writable by this user. Give a writable directory with "
            f"--cache-dir / --letta-cache-dir or ${ENV_VAR} (default ~/.cache/pytest-letta-compat).")
    return root


def install_complete(marker: Path, wanted: str) -> bool:
    """Whether the install whose last step wrote ``wanted`` into ``marker`` is complete and is
    the install wanted now (a half install, or one of another spec, has no such marker)."""
    return marker.exists() and marker.read_text() == wanted


def install_once(directory: Path, marker: Path, wanted: str, install: Callable[[], None], *,
                 timeout: float = 1800) -> bool:
    """Every install into the cache, one way: nothing to do when ``marker`` says ``wanted``;
    else, under ``directory``'s lock, check again (another process or the plugin's install
    ahead may have finished it), remove what a half install left in ``directory``, run
    ``install()`` (which creates it), and write the marker last, so a half install never looks complete; a failed one is removed.
    True when this call installed."""
    if install_complete(marker, wanted):
        return False
    with locked(directory, timeout=timeout):
        if install_complete(marker, wanted):
            return False
        shutil.rmtree(directory, ignore_errors=True)  # install() creates it
        try:
            install()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        marker.write_text(wanted)
        return True


@contextmanager
def locked(path: Path, timeout: float = 1800) -> Iterator[None]:
    """Hold an inter-process lock named after ``path`` (installs can take minutes)."""
    from filelock import Timeout

    from . import progress

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock", timeout=timeout)
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another run, or this run's installs ahead (plugin/prestart.py), holds it: say so
        with progress.phase(f"waiting for the lock on {path} (another run's, or this run's install ahead)",
                            done="got it"):
            lock.acquire()
    try:
        yield
    finally:
        lock.release()
