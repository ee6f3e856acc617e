"""Measure upgrade paths with the installed package: the shipped suite's upgrade and schema
checks on a matrix of just those paths, in a pytest subprocess (pytest-free itself). Used by
``letta-compat advise --measure`` and scripts/measure_server_upgrades.py."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from ..matrix.writer import derived_matrix
from ..versions_upgrades import MEASURE_CHECKS


def measure_command(old: str, new: str) -> str:
    """The command an operator runs, with the installed package, to measure the path old -> new."""
    return f"letta-compat advise --server {old} --to {new} --measure"


def run_paths(paths: list[tuple[str, str]], *, shard: str | None = None, report: str | Path | None = None,
              pytest_args: list[str] | None = None, name: str = "server-upgrades") -> int:
    """pytest's exit code for the shipped checks on ``paths`` (the progress goes to the terminal)."""
    with tempfile.TemporaryDirectory(prefix="letta-compat-measure-") as tmp:
        matrix_file = Path(tmp) / f"{name}.toml"
        matrix_file.write_text(derived_matrix(name, None, servers=(), upgrades=paths, letta_code=()))
        argv = [sys.executable, "-m", "pytest", "--letta-suite", tmp, f"--letta-matrix={matrix_file}",
                f"--letta-checks={','.join(MEASURE_CHECKS)}", "-p", "no:cacheprovider"]
        if shard:
            argv.append(f"--letta-shard={shard}")
        if report:
            argv.append(f"--letta-report={Path(report).resolve()}")
        return subprocess.run(argv + list(pytest_args or []), cwd=tmp).returncode
