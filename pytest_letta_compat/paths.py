"""Checks on the paths a user gives us to write to, made before any work starts.

A run that would only fail at its very end (a report path under ``/proc``, a backup into a
file) is refused up front, with one line naming the path and what is allowed. Nothing is
left behind by a check: at most a probe directory is created and removed again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import LettaCompatError


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _check_creatable(path: Path, what: str, allowed: str) -> None:
    """``path``'s parent exists, or can be created, and can hold new entries."""
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise LettaCompatError(f"{what} {path}: {ancestor} is a file, not a directory. {allowed}")
    try:  # os.access says yes for root everywhere; only trying tells (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".letta-compat-probe-", dir=ancestor))
    except OSError as exc:
        raise LettaCompatError(f"{what} {path}: cannot create anything in {ancestor} "
                               f"({exc.strerror or type(exc).__name__}). {allowed}") from None


def output_file(path: str | os.PathLike, what: str, allowed: str = "Give a path to a file in a writable directory.") -> Path:
    """A file we will write (created or replaced): not a directory, in a writable place."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise LettaCompatError(f"{what} {path}: is a directory. {allowed}")
    if path.exists() and not os.access(path, os.W_OK):
        raise LettaCompatError(f"{what} {path}: the file exists and is not writable. {allowed}")
    _check_creatable(path, what, allowed)
    return path


def new_directory(path: str | os.PathLike, what: str,
                  allowed: str = "Give a new directory (it is created) or an empty one.") -> Path:
    """A directory we will fill: new or empty, in a writable place. Nothing is created."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise LettaCompatError(f"{what} {path}: is a file, not a directory. {allowed}")
    if path.is_dir():
        try:
            if any(path.iterdir()):
                raise LettaCompatError(f"{what} {path}: the directory is not empty. {allowed}")
        except OSError as exc:
            raise LettaCompatError(f"{what} {path}: cannot be read ({exc.strerror or exc}). {allowed}") from None
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".letta-compat-probe-", dir=path))
        except OSError as exc:
            raise LettaCompatError(f"{what} {path}: not writable ({exc.strerror or exc}). {allowed}") from None
        return path
    _check_creatable(path, what, allowed)
    return path
