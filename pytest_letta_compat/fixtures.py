"""Fixtures for this suite and for other repos (``pip install pytest-letta-compat``).

Session-scoped where something is expensive (PostgreSQL, one server per matrix entry),
function-scoped where isolation is cheap (clients, connections, cloned databases).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from .backends import LettaBackend, LettaStack, make_backend
from .cache import ENV_VAR as CACHE_ENV, cache_root
from .errors import LettaCompatError
from .fake_llm import FakeLLM
from .matrix import Matrix, PostgresSpec, ServerEntry, UpgradeEntry
from .stash import BACKEND_KEY, MATRIX_KEY, STACKS_KEY


def _fail(exc: LettaCompatError):
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def letta_matrix(pytestconfig: pytest.Config) -> Matrix | None:
    """The validated matrix of this run (None when no matrix was given)."""
    return pytestconfig.stash.get(MATRIX_KEY, None)


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeLLM]:
    """A deterministic OpenAI-compatible endpoint every server is configured with."""
    log = tmp_path_factory.mktemp("fake-llm") / "requests.log"
    with FakeLLM(log_path=log) as llm:
        yield llm


@pytest.fixture(scope="session")
def letta_backend(pytestconfig: pytest.Config, letta_matrix: Matrix | None, fake_llm: FakeLLM,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[LettaBackend]:
    """The backend that runs PostgreSQL and the Letta servers for this session."""
    cfg = pytestconfig
    name = cfg.getoption("--letta-backend") or (letta_matrix.backend if letta_matrix else "native")
    cache = cfg.getoption("--letta-cache-dir") or os.environ.get(CACHE_ENV) or cfg.getini("letta_cache_dir") or None
    timeout = cfg.getoption("--letta-start-timeout") or float(cfg.getini("letta_start_timeout"))
    try:
        backend = make_backend(
            name, postgres=letta_matrix.postgres if letta_matrix else PostgresSpec(), cache=cache_root(cache),
            workdir=tmp_path_factory.mktemp("letta"), llm_env=fake_llm.server_env(), start_timeout=timeout,
            redis_binary=cfg.getoption("--letta-redis-server"))
        backend.start()
    except LettaCompatError as exc:
        _fail(exc)
    cfg.stash[BACKEND_KEY] = backend
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def letta_postgres(letta_backend: LettaBackend) -> LettaBackend:
    """The PostgreSQL+pgvector the stacks use: ``create_database(name, version=None)``
    (a copy of ``version``'s migrated template, or empty as init.sql lays it out),
    ``connect(name)``, ``dsn(name)``, ``drop_database(name)``, ``migrate(name, version)``."""
    return letta_backend


@pytest.fixture(scope="session")
def letta_server_factory(pytestconfig: pytest.Config, letta_backend: LettaBackend) -> Callable[..., LettaStack]:
    """``factory(version, *, database=None, secure=False, password=None)`` starts any Letta
    version on any database (default: a fresh copy of that version's template)."""

    def start(version: str, *, database: str | None = None, secure: bool = False,
              password: str | None = None) -> LettaStack:
        try:
            stack = letta_backend.start_server(version, database=database, secure=secure, password=password)
        except LettaCompatError as exc:
            _fail(exc)
        # attach this server's log to the report of the test that started it, should it fail
        used = pytestconfig.stash.get(STACKS_KEY, None)
        if used is not None:
            used.append(stack)
        return stack

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
def letta_server(letta_server_entry: ServerEntry, letta_server_factory) -> Iterator[LettaStack]:
    """The running server of the current matrix entry: ``url``, ``version``, ``dsn``,
    ``log_path``, ``client()``, ``connect()``. One process per entry, shared by its tests."""
    stack = letta_server_factory(letta_server_entry.version, secure=letta_server_entry.secure)
    yield stack
    stack.stop()


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
