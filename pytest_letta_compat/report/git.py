"""git, as both gates read the operator's repository: the work tree's root, and files at a ref."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import LettaCompatError


def git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``git ARGS`` in ``cwd``, its output captured (the caller reads returncode)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def git_output(args: list[str], cwd: Path) -> str:
    """``git ARGS``'s output, or one LettaCompatError with git's own words."""
    proc = git(args, cwd)
    if proc.returncode != 0:
        raise LettaCompatError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}.")
    return proc.stdout


def repository_root(path: Path) -> Path | None:
    """The root of the git work tree that holds the file ``path``, or None outside git."""
    proc = git(["rev-parse", "--show-toplevel"], Path(path).resolve().parent)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None
