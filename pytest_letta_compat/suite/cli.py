"""The real ``letta-compat`` CLI, run as an operator runs it, for the checks that test it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def letta_compat(*args: str | Path, cache: str | Path | None = None, api_key: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """``letta-compat [--cache-dir CACHE] ARGS``, its output captured. ``env`` is added to this
    process's environment; the API key goes in ``LETTA_API_KEY``, never on the command line
    (and an inherited one is dropped, so a run without ``api_key`` has none)."""
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "LETTA_API_KEY"}
    if api_key:
        environment["LETTA_API_KEY"] = api_key
    cache_args = ("--cache-dir", str(cache)) if cache is not None else ()
    return subprocess.run([sys.executable, "-m", "pytest_letta_compat.cli.main", *cache_args, *map(str, args)],
                          capture_output=True, text=True, env=environment, timeout=timeout)
