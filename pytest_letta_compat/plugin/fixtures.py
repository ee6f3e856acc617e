"""Fixtures for this suite and for other repos (installed from the pytest-letta-compat wheel).

Session-scoped where something is expensive (PostgreSQL, one server per matrix entry),
function-scoped where isolation is cheap (clients, connections, cloned databases).
"""

from __future__ import annotations

import warnings

from collections.abc import Callable, Iterator, Mapping

import httpx
import psycopg
import pytest

from ..backends import make_backend
from ..backends.base import LettaBackend, LettaStack
from ..cache import cache_root
from ..errors import LettaCompatError
from ..provision.fake_llm import FakeLLM
from ..provision.letta_code import RUN_TIMEOUT, LettaCodeInstall, LettaCodeResult, LettaCodeRunner, ensure_letta_code
from ..matrix.model import LettaCodePair, Matrix, PostgresSpec, RehearsalEntry, ServerEntry, UpgradeEntry
from ..operations.upgrade_path import UpgradePath
from . import prestart, settings
from .stash import BACKEND_KEY, MATRIX_KEY, PHASE_KEY, STACKS_KEY, STARTED_BY_KEY

# the Letta Code runs of a test, attached to its report when it fails
LETTA_CODE_RUNS_KEY = pytest.StashKey[list]()


def _fail(exc: LettaCompatError):
    """The test fails with the error's one paragraph: no traceback, and (``from None``) not the
    error again as the exception this one was raised while handling."""
    raise pytest.fail.Exception(str(exc), pytrace=False) from None


def cache_dir_option(config: pytest.Config) -> str | None:
    """The cache directory asked for: --letta-cache-dir, $LETTA_COMPAT_CACHE, the ini key (None: the default)."""
    return settings.of(config).cache_dir


@pytest.fixture(scope="session")
def letta_matrix(pytestconfig: pytest.Config) -> Matrix | None:
    """The validated matrix of this run (None when no matrix was given)."""
    return pytestconfig.stash.get(MATRIX_KEY, None)


@pytest.fixture(scope="session")
def letta_fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeLLM]:
    """A deterministic OpenAI-compatible endpoint every server is configured with."""
    log = tmp_path_factory.mktemp("fake-llm") / "requests.log"
    with FakeLLM(log_path=log) as llm:
        yield llm


@pytest.fixture(scope="session")
def letta_backend(pytestconfig: pytest.Config, letta_matrix: Matrix | None, letta_fake_llm: FakeLLM,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[LettaBackend]:
    """The backend that runs PostgreSQL+pgvector and the Letta servers for this session:
    ``create_database(name, version=None)`` (a copy of ``version``'s migrated template, or empty
    as init.sql lays it out), ``connect(name)``, ``dsn(name)``, ``drop_database(name)``,
    ``migrate(name, version)``, ``unique_name(*parts)``, ``start_server(...)``."""
    cfg = pytestconfig
    chosen = settings.of(cfg)
    name = chosen.backend or (letta_matrix.backend if letta_matrix else "native")
    timeout = chosen.start_timeout
    try:
        backend = make_backend(
            name, postgres=letta_matrix.postgres if letta_matrix else PostgresSpec(),
            cache=cache_root(cache_dir_option(cfg)),
            workdir=tmp_path_factory.mktemp("letta"), llm_env=letta_fake_llm.server_env(), start_timeout=timeout,
            redis_binary=chosen.redis_server, compose=chosen.compose)
        backend.start()
    except LettaCompatError as exc:
        _fail(exc)
    cfg.stash[BACKEND_KEY] = backend
    ahead = prestart.of(cfg)  # installs what the matrix lacks while the first tests run
    if ahead is not None:
        ahead.install_ahead(backend)
    try:
        yield backend
    finally:
        if ahead is not None:
            ahead.close()  # no server start under way, then the backend stops them all
        backend.stop()
        if ahead is not None:
            ahead.release()


class LettaCompatDeprecationWarning(DeprecationWarning):
    """A fixture name the plugin still answers to, for one more release."""


def _renamed(old: str, new: str) -> None:
    warnings.warn(LettaCompatDeprecationWarning(
        f"the fixture `{old}` is now `{new}` (every fixture of pytest-letta-compat starts with letta_); "
        f"`{old}` goes away in a later release"), stacklevel=3)


@pytest.fixture(scope="session")
def letta_postgres(letta_backend: LettaBackend) -> LettaBackend:
    """Deprecated: the same object as ``letta_backend`` (use that name)."""
    _renamed("letta_postgres", "letta_backend")
    return letta_backend


@pytest.fixture(scope="session")
def fake_llm(letta_fake_llm: FakeLLM) -> FakeLLM:
    """Deprecated: ``letta_fake_llm`` (a bare ``fake_llm`` can collide with a user's own fixture)."""
    _renamed("fake_llm", "letta_fake_llm")
    return letta_fake_llm


@pytest.fixture(scope="session")
def letta_server_factory(pytestconfig: pytest.Config, letta_backend: LettaBackend) -> Callable[..., LettaStack]:
    """``factory(version, *, database=None, secure=False, password=None, env=None)`` starts any Letta
    version on any database (default: a fresh copy of that version's template).
    ``factory.stop_soon(stack)`` stops a server in the background (the session waits for it
    at its end); ``stack.stop()`` when its database is used next."""

    def start(version: str, *, database: str | None = None, secure: bool = False,
              password: str | None = None, env: Mapping[str, str] | None = None) -> LettaStack:
        try:
            extra = {"env": env} if env else {}  # backends of tests' own may not take it
            stack = letta_backend.start_server(version, database=database, secure=secure, password=password,
                                               **extra)
        except LettaCompatError as exc:
            _fail(exc)
        # attach this server's log to the report of the test that started it, should it fail
        used = pytestconfig.stash.get(STACKS_KEY, None)
        if used is not None:
            used.append(stack)
        if PHASE_KEY in pytestconfig.stash:  # which test phase waited for it (the run's timings say)
            pytestconfig.stash.setdefault(STARTED_BY_KEY, {})[stack] = pytestconfig.stash[PHASE_KEY]
        return stack

    start.stop_soon = letta_backend.stop_soon
    return start


@pytest.fixture(scope="session")
def letta_server_entry(request: pytest.FixtureRequest) -> ServerEntry:
    """The current matrix [[server]] entry (tests using it run once per entry)."""
    return request.param


@pytest.fixture(scope="session")
def letta_upgrade_entry(request: pytest.FixtureRequest) -> UpgradeEntry:
    """The current matrix [[upgrade]] entry: ``from_version`` and ``to_version``."""
    return request.param


@pytest.fixture(scope="session")
def letta_upgrade_path(letta_upgrade_entry: UpgradeEntry, letta_backend: LettaBackend, letta_server_factory,
                       letta_fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpgradePath]:
    """The current [[upgrade]] path, seeded, upgraded and started once for all its checks:
    ``seeded`` and ``upgraded`` (template databases: read them, never change them), ``agents``
    ({name: id} of the seeded agents), ``before`` (id -> (name, messages) before the upgrade),
    ``clone("seeded" | "upgraded")`` (a database of your own), ``old_server()`` and
    ``new_server()`` (started on first use, shared), ``password`` (of every server of the path)."""
    entry = letta_upgrade_entry
    path = UpgradePath(letta_backend, entry.from_version, entry.to_version, letta_fake_llm,
                       tmp_path_factory.mktemp(entry.id), start_server=letta_server_factory)
    try:
        path.build()
    except LettaCompatError as exc:
        _fail(exc)
    for phase, seconds in path.timings.items():
        letta_backend.timings[f"path{phase}_{entry.from_version}->{entry.to_version}"] = seconds
    try:
        yield path
    finally:
        path.close()


@pytest.fixture(scope="session")
def letta_rehearsal_entry(request: pytest.FixtureRequest) -> RehearsalEntry:
    """The current matrix [[rehearsal]] entry: ``dump``, ``to_version``, ``letta_code``."""
    return request.param


@pytest.fixture(scope="session")
def letta_rehearsal(letta_rehearsal_entry: RehearsalEntry, letta_backend: LettaBackend) -> Iterator:
    """``letta-compat rehearse --dump DUMP --to VERSION`` of the current [[rehearsal]] entry, done once:
    ``.report`` (the JSON report), ``.path("letta-compat" | "image")``, and on a path's upgraded copy
    ``.dsn(path)`` and ``.start_server(path)`` (the target release; stop() it) for checks of your own."""
    from ..operations.rehearse import LettaRehearsal
    from ..operations.rehearse_request import RehearsalRequest

    entry = letta_rehearsal_entry
    try:
        rehearsal = LettaRehearsal(RehearsalRequest(targets=[entry.to_version], cache=letta_backend.cache,
                                                    dump=entry.dump, letta_code=list(entry.letta_code),
                                                    backend=letta_backend.name), progress=lambda line: None)
    except LettaCompatError as exc:
        _fail(exc)
    try:
        yield rehearsal
    finally:
        rehearsal.close()


@pytest.fixture(scope="session")
def letta_server(pytestconfig: pytest.Config, letta_server_entry: ServerEntry, letta_server_factory,
                 letta_backend: LettaBackend) -> Iterator[LettaStack]:
    """The running server of the current matrix entry: ``url``, ``version``, ``dsn``,
    ``log_path``, ``client()``, ``connect()``. One process per entry, shared by its tests.
    Once it is healthy, the next entry's server starts in the background (plugin/prestart.py)."""
    ahead = prestart.of(pytestconfig)
    try:
        stack = ahead.take(letta_server_entry) if ahead is not None else None
    except LettaCompatError as exc:  # its start in the background failed: as a start here would
        _fail(exc)
    if stack is None:
        stack = letta_server_factory(letta_server_entry.version, secure=letta_server_entry.secure)
    if ahead is not None:
        ahead.start_next(letta_backend)
    yield stack
    letta_server_factory.stop_soon(stack)


@pytest.fixture(scope="session")
def letta_server_second(letta_server: LettaStack, letta_server_factory) -> Iterator[LettaStack]:
    """A second process of the entry's release on the entry's database, with its own Redis:
    what a restarted server sees. Started once per entry on first use, shared by the entry's
    tests (one start, not one per Letta Code release), stopped with the entry."""
    stack = letta_server_factory(letta_server.version, database=letta_server.database,
                                 password=letta_server.password)
    yield stack
    letta_server_factory.stop_soon(stack)


@pytest.fixture
def letta_client(letta_server: LettaStack) -> Iterator[httpx.Client]:
    """An httpx client bound to the entry's server (authenticated in secure mode)."""
    with letta_server.client() as client:
        yield client


@pytest.fixture
def letta_db(letta_server: LettaStack) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the entry server's database."""
    with letta_server.connect() as conn:
        yield conn


@pytest.fixture(scope="session")
def letta_code_entry(request: pytest.FixtureRequest, letta_server_entry: ServerEntry) -> LettaCodePair:
    """The current server × Letta Code pair of the matrix: ``server`` (the [[server]] entry,
    whose session server the pair's tests share), ``letta_code``, ``version``, ``id``.
    It carries the parametrization but starts nothing."""
    return request.param


@pytest.fixture(scope="session")
def letta_code_install(letta_code_entry: LettaCodePair, letta_backend: LettaBackend) -> LettaCodeInstall:
    """The pair's Letta Code version, installed into the cache (``executable``, ``source``)."""
    try:
        return ensure_letta_code(letta_code_entry.version, letta_backend.cache)
    except LettaCompatError as exc:
        _fail(exc)


class _LettaCodeFixture(LettaCodeRunner):
    def __call__(self, *args: str, cwd=None, json: bool = False, timeout: float = RUN_TIMEOUT) -> LettaCodeResult:
        try:
            return super().__call__(*args, cwd=cwd, json=json, timeout=timeout)
        except LettaCompatError as exc:  # a run that hung: one paragraph, not a traceback
            _fail(exc)


@pytest.fixture
def letta_code(request: pytest.FixtureRequest, letta_code_install: LettaCodeInstall, letta_server: LettaStack,
               tmp_path) -> LettaCodeRunner:
    """``letta_code(*args, cwd=None, json=False, timeout=180)`` runs the pair's Letta Code
    against the pair's server and returns ``.returncode/.stdout/.stderr/.json``. The test's
    runs share one fresh HOME and project directory (``.home``, ``.project``), so a second
    run resumes the first one's agent; ``cwd`` runs elsewhere (relative: beside ``.project``);
    ``json=True`` adds ``--output-format json``."""
    runner = _LettaCodeFixture(letta_code_install, base_url=letta_server.url, api_key=letta_server.password,
                               workdir=tmp_path / "letta-code")
    request.node.stash[LETTA_CODE_RUNS_KEY] = runner.runs
    return runner
