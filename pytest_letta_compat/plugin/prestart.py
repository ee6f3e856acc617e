"""Overlap what waits (issue #15): while one [[server]] entry's tests run, the next entry's
server starts in the background, and whatever the matrix still has to install is installed
ahead of the test that needs it.

A Letta server takes 12 to 20 s to boot on 2 cores; run one after the other, every entry
waits for its own. Here the next entry's server starts once the current one is healthy, in
one thread, so at most one server boots at a time on the plugin's account. Under xdist a
worker's order is not known up front, so nothing starts ahead there; ``--no-letta-prestart``
(ini ``letta_prestart = false``) turns it all off.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable

import pytest

from .. import versions
from ..backends.base import LettaBackend, LettaStack
from ..matrix.model import ServerEntry
from ..provision.letta_code import ensure_letta_code, letta_code_installed
from . import settings
from .reporting import Prestarted
from .stash import MATRIX_KEY, PHASE_KEY, PRESTART_KEY, STACKS_KEY, STARTED_BY_KEY


def _params(item: pytest.Item) -> dict:
    return getattr(getattr(item, "callspec", None), "params", {})


def server_sequence(items: Iterable[pytest.Item]) -> list[ServerEntry]:
    """The [[server]] entries in the order ``letta_server`` will start their servers, given the
    final item order: one start per run of items of one entry that use it. An item of another
    entry in between ends the run (its ``letta_server_entry`` takes the session-scoped param
    over, so pytest tears ``letta_server`` down), even when it does not use the server."""
    sequence: list[ServerEntry] = []
    running: ServerEntry | None = None
    for item in items:
        entry = _params(item).get("letta_server_entry")
        if entry is None:
            continue
        if running is not None and entry != running:
            running = None
        if running is None and "letta_server" in getattr(item, "fixturenames", ()):
            sequence.append(entry)
            running = entry
    return sequence


def versions_needed(items: Iterable[pytest.Item]) -> tuple[list[str], list[str]]:
    """(server versions, Letta Code versions) in the order the items will need them."""
    servers: dict[str, None] = {}
    letta_code: dict[str, None] = {}
    for item in items:
        params = _params(item)
        if (entry := params.get("letta_server_entry")) is not None:
            servers[entry.version] = None
        if (entry := params.get("letta_upgrade_entry")) is not None:
            servers.update(dict.fromkeys((entry.from_version, entry.to_version)))
        if (entry := params.get("letta_rehearsal_entry")) is not None:
            servers[entry.to_version] = None
            letta_code.update(dict.fromkeys(entry.letta_code))
        if (pair := params.get("letta_code_entry")) is not None:
            letta_code[pair.version] = None
    return list(servers), list(letta_code)


class _Ahead:
    """One server start for the ``position``-th start of the sequence, done by the starter thread."""

    def __init__(self, position: int, entry: ServerEntry, backend: LettaBackend):
        self.position, self.entry, self.backend = position, entry, backend
        self.stack: LettaStack | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self, started_by: dict) -> None:
        try:  # the backend tracks it: stopped with the backend should nobody take it
            self.stack = self.backend.start_server(self.entry.version, secure=self.entry.secure)
            started_by[self.stack] = Prestarted()
        except BaseException as exc:  # noqa: BLE001 - raised where the entry's tests need the server
            self.error = exc
        finally:
            self.done.set()

    def join(self) -> float:
        """Wait for the start to end; the seconds waited."""
        started = time.monotonic()
        self.done.wait()
        return time.monotonic() - started

    def discard(self) -> None:
        """Nobody will take it (its entry was passed over): stop it once its start is done."""
        def stop() -> None:
            self.done.wait()
            if self.stack is not None:
                self.backend.stop_soon(self.stack)

        threading.Thread(target=stop, name=f"letta-compat discard {self.entry.id}", daemon=True).start()


class _Starter:
    """The one thread that starts servers ahead, one at a time. It lives until the backend has
    stopped them: a native server gets PR_SET_PDEATHSIG (provision/procs.py), which Linux
    sends when the *thread* that started it ends, so a thread per start would kill its server."""

    def __init__(self, started_by: dict):
        self._jobs: queue.Queue[_Ahead | None] = queue.Queue()
        self._started_by = started_by
        self._thread = threading.Thread(target=self._serve, name="letta-compat prestart", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (ahead := self._jobs.get()) is not None:
            ahead.run(self._started_by)

    def submit(self, ahead: _Ahead) -> None:
        self._jobs.put(ahead)

    def end(self) -> None:
        self._jobs.put(None)


class Prestart:
    """Registered by the plugin when starting ahead is on; ``letta_server`` and ``letta_backend``
    call it (``of(config)``)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.sequence: list[ServerEntry] = []
        self.servers: list[str] = []  # server versions in the order they will be needed
        self.letta_code: list[str] = []
        self._position = -1  # in ``sequence``, of the last server letta_server started
        self._ahead: _Ahead | None = None  # the start under way for the sequence's next server
        self._all: list[_Ahead] = []
        self._starter: _Starter | None = None
        self._installs: threading.Thread | None = None
        self._started_by = config.stash.setdefault(STARTED_BY_KEY, {})

    @pytest.hookimpl(trylast=True)  # after every deselection and reordering: the order that runs
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.sequence = server_sequence(items)
        self.servers, self.letta_code = versions_needed(items)

    # -- installs ------------------------------------------------------------------------------
    def install_ahead(self, backend: LettaBackend) -> threading.Thread | None:
        """One daemon thread installing, one at a time, what the matrix needs and the cache
        lacks, in the order the tests need it (servers, the migration source when a template
        dump is missing, then Letta Code). A foreground install of the same version waits for
        it on the install's file lock; errors are left to that foreground call to report.
        Nothing starts when everything is installed (marker reads only)."""
        servers = [v for v in self.servers if not backend.prepared(v)]
        source = versions.MIGRATIONS_SOURCE
        if (source not in servers and not backend.prepared(source)
                and any(not _dump_cached(backend, v) for v in self.servers)):
            servers.insert(1, source)  # a missing template is migrated with it, right after the first install
        letta_code = [v for v in self.letta_code if not letta_code_installed(v, backend.cache)]
        if not servers and not letta_code:
            return None

        def install() -> None:
            for version in servers:
                _quietly(backend.prepare, [version])
            for version in letta_code:
                _quietly(ensure_letta_code, version, backend.cache)

        self._installs = threading.Thread(target=install, name="letta-compat install ahead", daemon=True)
        self._installs.start()
        return self._installs

    # -- servers -------------------------------------------------------------------------------
    def take(self, entry: ServerEntry) -> LettaStack | None:
        """The server started ahead for ``entry``'s start, once its start is done (its failure
        is raised here, where a start of its own would have failed), or None: start one."""
        position = next((i for i in range(self._position + 1, len(self.sequence)) if self.sequence[i] == entry), None)
        if position is None:  # a start the collection did not foresee: the one ahead stays for its own
            return None
        self._position = position
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        if ahead.position != position:  # its entry started nothing (its tests skipped, say)
            ahead.discard()
            return None
        waited = ahead.join()
        if ahead.error is not None:
            raise ahead.error
        stack = ahead.stack
        phase = self.config.stash.get(PHASE_KEY, (None, None))
        self._started_by[stack] = Prestarted(phase[0], phase[1], waited)
        used = self.config.stash.get(STACKS_KEY, None)  # its log joins the report of the test that took it
        if used is not None:
            used.append(stack)
        return stack

    def start_next(self, backend: LettaBackend) -> None:
        """Once a server of the sequence is healthy: start the next one, unless one is on its way."""
        following = self._position + 1
        if self._ahead is None and following < len(self.sequence):
            self._ahead = _Ahead(following, self.sequence[following], backend)
            self._all.append(self._ahead)
            if self._starter is None:
                self._starter = _Starter(self._started_by)
            self._starter.submit(self._ahead)

    def close(self) -> None:
        """Before the backend stops: wait for a start still under way, so that it never starts
        a server after the backend has stopped everything it tracks."""
        for ahead in self._all:
            ahead.join()

    def release(self) -> None:
        """After the backend stopped its servers: the starter thread may end."""
        if self._starter is not None:
            self._starter.end()
            self._starter = None

    def pytest_unconfigure(self) -> None:  # a letta_backend of the user's own never calls release()
        self.release()


def _dump_cached(backend: LettaBackend, version: str) -> bool:
    try:
        return backend.template_dump(version).exists()
    except Exception:  # noqa: BLE001 - an unknown version: the foreground start says why
        return True


def _quietly(call, *args) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - the foreground call of the same install reports it, once
        pass


def register(config: pytest.Config) -> None:
    """Start ahead unless switched off, or on an xdist worker (its share of the order is not
    known up front), or without a matrix (nothing to start)."""
    if not settings.of(config).prestart or hasattr(config, "workerinput") or config.stash.get(MATRIX_KEY, None) is None:
        return
    prestart = Prestart(config)
    config.stash[PRESTART_KEY] = prestart
    config.pluginmanager.register(prestart, "letta-compat-prestart")


def of(config: pytest.Config) -> Prestart | None:
    return config.stash.get(PRESTART_KEY, None)
