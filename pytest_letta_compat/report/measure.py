"""Run the shipped compatibility suite (or the operator's own) on a matrix written for the
occasion, in a pytest subprocess: pytest-free itself. The one launcher behind the gates,
``letta-compat advise --measure`` and scripts/measure_server_upgrades.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..matrix.writer import derived_matrix
from ..versions_upgrades import MEASURE_CHECKS


def run_suite(matrix_text: str, *, name: str, checks: tuple[str, ...] = (), suite: str | Path | None = None,
              shard: str | None = None, report: str | Path | None = None,
              pytest_args: list[str] | tuple[str, ...] | None = None) -> int:
    """pytest's exit code for ``matrix_text``; without ``suite``, the shipped suite alone, run
    from an empty temporary directory (nothing of the caller's own tests is collected with it)."""
    with tempfile.TemporaryDirectory(prefix="letta-compat-run-") as tmp:
        matrix_file = Path(tmp) / f"{name}.toml"
        matrix_file.write_text(matrix_text)
        tests = [str(Path(suite).resolve())] if suite else ["--letta-suite", tmp]
        argv = [sys.executable, "-m", "pytest", *tests, f"--letta-matrix={matrix_file}", "-p", "no:cacheprovider"]
        if checks:
            argv.append(f"--letta-checks={','.join(checks)}")
        if shard:
            argv.append(f"--letta-shard={shard}")
        if report:
            argv.append(f"--letta-report={Path(report).resolve()}")
        return subprocess.run(argv + list(pytest_args or []), cwd=None if suite else tmp).returncode


def measured_now(run: Callable[[Path], object]) -> dict | None:
    """``run(report)`` (a run_suite or run_paths writing its JSON report to ``report``), in a
    directory of its own: the report, read back, or None when the run wrote none."""
    with tempfile.TemporaryDirectory(prefix="letta-compat-measure-") as tmp:
        report = Path(tmp) / "measured.json"
        run(report)
        return json.loads(report.read_text()) if report.is_file() else None


def measure_command(old: str, new: str) -> str:
    """The command an operator runs, with the installed package, to measure the path old -> new."""
    return f"letta-compat advise --server {old} --to {new} --measure"


def run_paths(paths: list[tuple[str, str]], *, shard: str | None = None, report: str | Path | None = None,
              pytest_args: list[str] | None = None, name: str = "server-upgrades") -> int:
    """The shipped upgrade and schema checks on ``paths``."""
    return run_suite(derived_matrix(name, None, servers=(), upgrades=paths, letta_code=()), name=name,
                     checks=MEASURE_CHECKS, shard=shard, report=report, pytest_args=pytest_args)
