"""Shared helpers for the tools' tests: the real CLI, run as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def run_gate(letta_backend):
    """``run_gate(repo, *gate_args, pytest_args=())``: `letta-compat gate` in an operator's repository,
    on this run's cache; what follows `--` goes to the pytest run the gate starts."""

    def run(repo: Path, *gate_args: str, pytest_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        cache = str(letta_backend.cache)
        return subprocess.run(
            [sys.executable, "-m", "pytest_letta_compat.cli.main", "--cache-dir", cache, "gate", *gate_args,
             "--", *pytest_args, f"--letta-cache-dir={cache}"],
            cwd=repo, capture_output=True, text=True, timeout=900)

    return run
