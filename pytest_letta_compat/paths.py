"""The paths we write: checks made before any work starts, and writes that are atomic.

A run that would only fail at its very end (a report path under ``/proc``, a backup into a
file) is refused up front, with one line naming the path and what is allowed. Nothing is
left behind by a check: at most a probe directory is created and removed again. Whatever we
write (a backup's files, a template's dump, a moved agent) appears whole under its real name
or not at all (``atomic_path``, ``write_text_atomic``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LettaCompatError, redact


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


REPORT_SUFFIXES = (".json", ".md", ".html")


def report_files(path: str | os.PathLike, what: str | None = None) -> list[Path]:
    """The files a report path names: PATH.json, PATH.md or PATH.html itself, a bare PATH all
    three. With ``what`` (the option that gave it), each is checked up front (``output_file``)."""
    path = Path(path)
    files = [path] if path.suffix in REPORT_SUFFIXES else [path.with_suffix(s) for s in REPORT_SUFFIXES]
    if what is not None:
        allowed = "Give a path in a writable directory: PATH.json, .md or .html, or a bare PATH for all three."
        files = [output_file(f, what, allowed) for f in files]
    return files


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A sibling of ``path`` (this process's own) to produce a file or directory in; it takes
    ``path``'s place when the block ends without an error, and is removed if it raises, so a
    crash never leaves half of it under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    _remove(partial)
    try:
        yield partial
        if partial.is_dir() and path.is_dir():
            shutil.rmtree(path)  # a directory cannot replace a non-empty one
        partial.replace(path)
    finally:
        if partial.exists() or partial.is_symlink():
            _remove(partial)


def write_text_atomic(path: str | os.PathLike, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``mode`` (say 0o600) from the first byte."""
    with atomic_path(path) as partial:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)


def keep_masked(text: str, target: str | os.PathLike) -> Path:
    """A log's ``text``, secrets masked, written to ``target`` (its folders made, private) to
    outlive the run's temporary folders; returns ``target``. Raises OSError as ``open`` does."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.write_text(redact(text), encoding="utf-8")
    return target
