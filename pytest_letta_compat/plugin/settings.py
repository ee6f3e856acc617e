"""Every setting of a run, resolved once in ``pytest_configure`` (option, then environment, then
ini key, as documented) into one frozen ``Settings`` on the config's stash, as pytest-postgresql's
config does. Fixtures, prestart, the suite collector and the reports read only that; a bad value
is refused here, before anything starts, as one ``UsageError`` naming where it came from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..cache import ENV_VAR as CACHE_ENV
from ..errors import LettaCompatError
from ..matrix.model import BACKENDS, CHECKS
from ..matrix.shards import parse_shard
from ..paths import report_files

MATRIX_ENV = "LETTA_MATRIX"


@dataclass(frozen=True)
class Settings:
    matrix_path: Path | None  # None: no matrix (or --help / --version)
    matrix_source: str  # where the choice came from: "--letta-matrix", "$LETTA_MATRIX", ...
    compose: str | None
    backend: str | None  # None: the matrix's
    start_timeout: float
    cache_dir: str | None  # None: the default cache
    report: str | None
    logs: str | None
    prestart: bool
    suite: bool
    suite_only: bool  # the shipped suite and nothing else (implies suite)
    checks: frozenset[str] | None  # None: every check
    skip_checks: frozenset[str]
    shard: tuple[int, int] | None  # --letta-shard i/n
    redis_server: str | None


SETTINGS_KEY = pytest.StashKey[Settings]()


def of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


def _matrix_path(config: pytest.Config) -> tuple[Path | None, str]:
    cli = config.getoption("--letta-matrix")
    if cli:
        return Path(cli), "--letta-matrix"
    env = os.environ.get(MATRIX_ENV)
    if env:
        return Path(env), f"${MATRIX_ENV}"
    ini = config.getini("letta_matrix")
    if ini:
        return config.rootpath / ini, "letta_matrix ini key"
    return None, "not set"


def _check_names(config: pytest.Config, option: str, ini: str) -> frozenset[str] | None:
    raw = config.getoption(option) or config.getini(ini)
    if not raw:
        return None
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(CHECKS))
    if unknown:
        where = option if config.getoption(option) else f"the {ini} ini key"
        raise pytest.UsageError(f"{where}: unknown check name(s) {', '.join(unknown)}. Allowed: {', '.join(CHECKS)}.")
    return names


def _flag(config: pytest.Config, option: str, ini: str) -> bool:
    wanted = config.getoption(option)
    return bool(config.getini(ini) if wanted is None else wanted)


def _start_timeout(config: pytest.Config) -> float:
    timeout, source = config.getoption("--letta-start-timeout"), "--letta-start-timeout"
    if timeout is None:
        timeout, source = config.getini("letta_start_timeout"), "the letta_start_timeout ini key"
    try:
        seconds = float(timeout)
        if seconds <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source} is {timeout!r}: give the seconds a server may take to become "
                                "healthy, a number above 0 (default 300).") from None
    return seconds


def resolve(config: pytest.Config) -> Settings:
    """The run's settings, checked; stored on the config (``of(config)`` reads them)."""
    path, source = _matrix_path(config)
    compose = config.getoption("--letta-compose")
    if config.getoption("help", False) or config.getoption("version", False):
        path = compose = None  # --help and --version work whatever $LETTA_MATRIX names
    backend = config.getoption("--letta-backend")
    if backend is not None and backend not in BACKENDS:
        raise pytest.UsageError(f"--letta-backend {backend!r} is not a backend. Allowed: {', '.join(BACKENDS)}.")
    report = config.getoption("--letta-report")
    try:
        if report and not hasattr(config, "workerinput"):  # the controller writes it
            report_files(report, "--letta-report")
        shard = parse_shard(config.getoption("--letta-shard"))
    except LettaCompatError as exc:
        raise pytest.UsageError(str(exc)) from None
    settings = Settings(
        matrix_path=path, matrix_source=source, compose=compose, backend=backend,
        start_timeout=_start_timeout(config),
        cache_dir=config.getoption("--letta-cache-dir") or os.environ.get(CACHE_ENV)
        or config.getini("letta_cache_dir") or None,
        report=report, logs=config.getoption("--letta-logs") or config.getini("letta_logs") or None,
        prestart=_flag(config, "letta_prestart", "letta_prestart"),
        suite=_flag(config, "--letta-suite", "letta_suite") or bool(config.getoption("--letta-suite-only")),
        suite_only=bool(config.getoption("--letta-suite-only")),
        checks=_check_names(config, "--letta-checks", "letta_checks"),
        skip_checks=_check_names(config, "--letta-skip-checks", "letta_skip_checks") or frozenset(),
        shard=shard, redis_server=config.getoption("--letta-redis-server"))
    config.stash[SETTINGS_KEY] = settings
    return settings
