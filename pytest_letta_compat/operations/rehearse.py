"""``rehearse``: prove an upgrade on a copy of the operator's own database, agent by agent.

The operator's dump (``pg_dump -Fc`` or plain SQL, tables in ``letta`` or ``public``), or a
live database read once with ``pg_dump`` (a read-only, repeatable-read snapshot), is restored
into the backend's PostgreSQL+pgvector (native: the embedded cluster; docker: its pgvector
container; servers start through ``backends.make_backend``). Nothing outside this machine is reached:
before any server starts, every agent's model and embedding endpoint and every provider's
and MCP server's address point at the in-process fake LLM, and stored keys are blanked.

Then, per target release, each on its own copy:

* **image**: what the official image does when its tag moves: ``alembic upgrade`` to the
  target's head at start, nothing else;
* **letta-compat**: the routine of ``letta-compat upgrade --apply``: the same migration, then
  the detected fix-ups (``fixups.run_fixups``).

On each: ``schema check`` against the target, the target server starts, the same inventory
is taken through its API (``inventory``), one message is exchanged with a sample of agents,
and every agent is compared with its state before. The verdict is the letta-compat path's;
what the image path loses is a warning.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .. import versions
from ..errors import LettaCompatError, redact
from ..paths import keep_masked
from ..postgres.client import pg_dump, run_pg_tool, shown_dsn
from ..postgres.layout import create_database, drop_public
from ..provision.alembic import RevisionGraph, backfill_notes, upgrade_to_release
from ..provision.fake_llm import FakeLLM
from ..provision.install import ensure_migration_scripts
from ..report.rehearsal import PATHS, PathResult, RehearsalReport
from ..rest.client import LettaAPI
from ..schema.compare import check_database
from ..schema.inspect import find_letta_schema
from .database import LettaDatabase
from .fixups import run_fixups
from .inventory import Inventory, api_inventory, sql_inventory
from .redirect import redirect_to_fake_llm
from .rehearse_checks import after_exchange, compare, exchange, letta_code_turn
from .rehearse_request import RehearsalRequest
from .rehearse_source import DumpFacts, Standing, reachable_targets, read_dump, where_it_stands

Progress = Callable[[str], None]
SOURCE_DB = "rehearsal_source"


class Rehearsal:
    """One rehearsal: its own cluster, fake LLM and working directory, gone when it ends."""

    def __init__(self, request: RehearsalRequest, progress: Progress = print):
        self.request = request
        self.progress = progress
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.workdir = Path(request.workdir or tempfile.mkdtemp(prefix="letta-compat-rehearse-"))
        self._own_workdir = request.workdir is None
        self.fake: FakeLLM | None = None
        self.backend = None
        self._copies = 0
        self.kept: dict[tuple[str, str], str] = {}  # (target, path) -> database, with request.keep
        self.letta_code_runs: dict[str, list[dict]] = {}  # target -> {"version", "verdict", "evidence"}
        self.letta_code_installs: dict = {}  # version -> LettaCodeInstall, installed before any server starts
        # where the logs of what did not come through go, to outlive the working directory
        self.logs_dir = (self.workdir / "logs" if not self._own_workdir else Path(request.cache) / "logs" /
                         f"rehearse-{time.strftime('%Y%m%d-%H%M%S')}-{self.workdir.name.rsplit('-', 1)[-1]}")

    def keep_log(self, path: Path, name: str) -> str | None:
        """``path``, secrets masked, copied into ``logs_dir`` as ``name`` (None: there is no such log)."""
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return str(keep_masked(text, self.logs_dir / name))

    def say(self, line: str) -> None:
        self.progress(redact(f"[{time.monotonic() - self.started:6.1f}s] {line}"))

    # -- plumbing --------------------------------------------------------------------------
    def _start(self, targets: list[str]) -> None:
        """The fake LLM, then the backend's PostgreSQL; what each target's server needs (its
        install, or on docker its image) is checked here, so a missing one is one line, exit 2."""
        from ..backends import make_backend
        from ..matrix.model import PostgresSpec

        self.fake = FakeLLM(log_path=self.workdir / "fake-llm.log").start()
        env = self.fake.server_env()
        if self.request.encryption_key:
            env["LETTA_ENCRYPTION_KEY"] = self.request.encryption_key
        # docker: the backend's pgvector image (pgvector/pgvector:pg15 or its local stand-in)
        postgres = PostgresSpec(version=self.request.postgres_major) if self.request.backend == "native" \
            else PostgresSpec()
        self.backend = make_backend(self.request.backend, postgres=postgres, cache=self.request.cache,
                                    workdir=self.workdir / "servers", llm_env=env)
        began = time.monotonic()
        try:
            self.backend.start()
            self.backend.prepare(targets)
        except LettaCompatError as exc:
            raise LettaCompatError(str(exc).splitlines()[0]) from None
        self.timings["postgres"] = time.monotonic() - began

    def close(self) -> None:
        if self.backend is not None:
            self.backend.cleanup()
        if self.fake is not None:
            self.fake.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def cluster(self):
        return self.backend.database_server()  # the native cluster or the pgvector container

    def dsn(self, name: str) -> str:
        return self.backend.dsn(name)

    def copy(self, template: str, label: str, schema: str) -> str:
        """A new database holding what ``template`` holds (CREATE DATABASE ... TEMPLATE)."""
        self._copies += 1
        name = f"rehearsal_{self._copies}_{re.sub(r'[^a-z0-9]+', '_', label.lower())}"[:60]
        with self.cluster.connect("postgres", admin=True) as conn:
            create_database(conn, name, owner="letta", schema=schema, template=template)
        return name

    @contextmanager
    def connect_copy(self, name: str, schema: str) -> Iterator[psycopg.Connection]:
        """A connection to the copy ``name`` that finds Letta's tables in ``schema``."""
        with self.cluster.connect(name) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            yield conn

    # -- the source ------------------------------------------------------------------------
    def take_dump(self) -> Path:
        """``pg_dump -Fc`` of the live database: one read-only repeatable-read snapshot."""
        database = LettaDatabase(self.request.dsn)
        with database.connect() as conn:
            layout = database.layout(conn)  # not a Letta database: one line, before anything runs
        target = self.workdir / "source.dump"
        self.say(f"reading {shown_dsn(self.request.dsn)} (schema {layout.schema}) with pg_dump: one read-only "
                 "snapshot, nothing is written to it")
        began = time.monotonic()
        # pg_dump runs in a REPEATABLE READ, READ ONLY transaction and takes ACCESS SHARE locks only
        pg_dump(self.request.dsn, target)
        self.timings["pg_dump"] = time.monotonic() - began
        return target

    def restore_source(self, facts: DumpFacts) -> str:
        """The dump restored into database SOURCE_DB; the schema its Letta tables are in."""
        dump, kind, schema, roles = facts.path, facts.format, facts.schema, facts.roles
        with self.cluster.connect("postgres", admin=True) as conn:
            major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        self.say(f"restoring {dump} ({kind} format, {dump.stat().st_size / 1e6:.1f} MB, tables in schema "
                 f"{schema}) into PostgreSQL {major} ({self.request.backend} backend)")
        began = time.monotonic()
        with self.cluster.connect("postgres", admin=True) as conn:
            # search_path is set once the restored tables are found (a plain script may say otherwise)
            create_database(conn, SOURCE_DB, owner="letta", schema="public", template="template0")
            for role in sorted(roles):  # a plain script's OWNER TO / GRANT must find its roles
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        try:  # the embedded client tools that serve a server of this major, over the DSN
            if kind == "custom":
                run_pg_tool("pg_restore", ["--no-owner", "--no-acl", "--exit-on-error", str(dump)],
                            dsn=self.dsn(SOURCE_DB), major=major)
            else:
                run_pg_tool("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump)],
                            dsn=self.dsn(SOURCE_DB), major=major)
        except LettaCompatError as exc:
            raise LettaCompatError(f"--dump {dump} could not be restored into PostgreSQL "
                                   f"{major}: {str(exc).splitlines()[0][:400]}") from None
        with self.cluster.connect(SOURCE_DB) as conn:
            found, _ = find_letta_schema(conn)
            if found is None:
                raise LettaCompatError(f"--dump {dump} restored, but it holds no Letta tables (no alembic_version "
                                       "or agents table): it is not a dump of a Letta database.")
            if found != "public":
                drop_public(conn)  # init.sql's layout has none
                conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(
                    sql.Identifier(SOURCE_DB), sql.Identifier(found)))
        self.timings["restore"] = time.monotonic() - began
        self.say(f"restored in {self.timings['restore']:.1f} s")
        return found

    def redirect(self, name: str) -> list[str]:
        """Point the copy ``name`` at the fake LLM and blank stored keys, before any server
        starts (``redirect_to_fake_llm``). Returns what was redirected (no secret in it)."""
        with self.cluster.connect(name) as conn:
            return redirect_to_fake_llm(conn, self.fake)

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> RehearsalReport:
        request = self.request
        # every check of the input before anything starts: bad input is one line, nothing else
        dump = request.dump if request.dump is not None else self.take_dump()
        facts = read_dump(dump)
        graph = RevisionGraph.from_scripts(ensure_migration_scripts(request.cache))
        standing = where_it_stands(facts.revision, graph, shown_dsn(request.dsn) if request.dsn else str(dump))
        self.say(f"where it stands: {standing.described}")
        targets, skipped = reachable_targets(request.targets, standing, graph)
        for target in skipped:
            self.say(f"skipping --to {target}: it is older than the dump")
        self.install_letta_code()
        self._start(targets)
        schema = self.restore_source(facts)
        with self.cluster.connect(SOURCE_DB) as conn:
            if LettaDatabase.revision(conn, schema) != standing.revision:
                raise LettaCompatError(f"--dump {dump}: the restored database is at another alembic revision than "
                                       "the dump's table of contents says; the dump is inconsistent.")
        checked_against, drift = self.drift(standing)
        redirected = self.redirect(SOURCE_DB)
        for line in redirected:
            self.say(f"safety: {line}")
        before = self.inventory_before(standing, schema)
        source = {"kind": "dsn" if request.dsn else "dump", "where": standing.where, "format": facts.format,
                  "schema": schema, "revision": standing.revision, "releases": list(standing.releases),
                  "state": standing.state, "described": standing.described, "skipped_targets": skipped,
                  "drift_checked_against": checked_against, "drift": drift, "redirected": redirected,
                  "agents": len(before.agents), "stored_messages": before.messages, "inventory_via": before.via}
        report = RehearsalReport(source, timings=self.timings, backend=request.backend)
        for target in targets:
            report.targets.append(self.rehearse_target(target, before, schema))
        self.timings["total"] = time.monotonic() - self.started
        return report

    def drift(self, standing: Standing) -> tuple[str | None, list[str]]:
        """(the release checked against, the drift): ``schema check`` against the dump's own
        release, and what the fix-ups would repair."""
        drift: list[str] = []
        own = standing.releases[-1] if standing.releases else None
        if own:
            report = check_database(self.dsn(SOURCE_DB), own, self.request.cache)
            drift = [str(p) for p in report.problems]
        else:
            drift.append(f"not a release's schema: {standing.described}")
        drift += [str(r) for r in run_fixups(LettaDatabase(self.dsn(SOURCE_DB)), apply=False) if r.drift]
        for line in drift:
            self.say(f"drift: {line}")
        if not drift:
            self.say(f"drift: none (schema check against Letta {own})")
        return own, drift

    def inventory_before(self, standing: Standing, schema: str) -> Inventory:
        with self.cluster.connect(SOURCE_DB) as conn:
            base = sql_inventory(conn, schema)
        self.say(f"before: {len(base.agents)} agents, {base.messages} stored messages (SQL)")
        if not standing.releases:
            self.say("before: the dump is between releases, so no server of its own can read it: the inventory "
                     "is the SQL one")
            return base
        own = standing.releases[-1]
        name = self.copy(SOURCE_DB, f"before_{own}", schema)
        began = time.monotonic()
        try:
            stack = self.backend.start_server(own, database=name)
        except LettaCompatError as exc:
            self.say(f"before: Letta {own} did not start on the copy ({str(exc).splitlines()[0][:200]}); "
                     "the inventory is the SQL one")
            return base
        try:
            self.say(f"before: Letta {own} started on a copy in {time.monotonic() - began:.1f} s; reading every agent "
                     "through its API")
            with LettaAPI(stack.url, api_key=stack.password) as api:
                found = api_inventory(api, base)
        finally:
            stack.stop()
            self.backend.drop_database(name)
        self.timings["before"] = time.monotonic() - began
        return found

    def rehearse_target(self, target: str, before: Inventory, schema: str) -> dict[str, Any]:
        self.say(f"== Letta {target}")
        image_db = self.copy(SOURCE_DB, f"image_{target}", schema)
        log = self.workdir / f"alembic-{target}.log"
        began = time.monotonic()
        try:
            upgrade_to_release(self.dsn(image_db), target, self.request.cache, log_path=log,
                               encryption_key=self.request.encryption_key)
        except LettaCompatError as exc:
            with self.cluster.connect(image_db) as conn:
                now = LettaDatabase.revision(conn, schema)
            kept = self.keep_log(log, f"alembic-{target}.log")
            error = f"alembic upgrade to {target} failed, the database stopped at {now}: {str(exc).splitlines()[-1][:300]}"
            results = {path: PathResult(path, verdict="failed", error=error, log=kept) for path in PATHS}
            self.say(f"image: {error}")
            found = {"version": target, "paths": {p: r.to_json() for p, r in results.items()}}
            if self.request.letta_code:
                found["letta_code"] = [{"version": v, "verdict": "fails", "evidence": "not run: the migration failed"}
                                       for v in self.request.letta_code]
            return found
        seconds = time.monotonic() - began
        self.timings[f"migrate_{target}"] = seconds
        self.say(f"migrated a copy to {target} ({versions.server_release(target).alembic_head}) in {seconds:.1f} s")
        notes = backfill_notes(log.read_text(encoding="utf-8", errors="replace"))
        for line in notes:
            self.say(f"alembic: {line}")
        compat_db = self.copy(image_db, f"compat_{target}", schema)
        fixed = tuple(str(r) for r in run_fixups(LettaDatabase(self.dsn(compat_db)), apply=True))
        results = {}
        for path, name in (("image", image_db), ("letta-compat", compat_db)):
            migrated = PathResult(path, migration_seconds=seconds, migration_notes=tuple(notes),
                                  fixups=fixed if path == "letta-compat" else ())
            for line in migrated.fixups:
                if "nothing to do" not in line:
                    self.say(f"{path}: fix-up {line}")
            results[path] = self.check_path(target, name, schema, before, migrated)
            if self.request.keep:
                self.kept[(target, path)] = name
            else:
                self.backend.drop_database(name)
        found = {"version": target, "paths": {p: r.to_json() for p, r in results.items()}}
        if self.request.letta_code:
            found["letta_code"] = self.letta_code_runs.get(target) or [
                {"version": v, "verdict": "fails", "evidence": "not run: the target did not start on the letta-compat "
                 "path's copy" if not results["letta-compat"].server_started else "not run"}
                for v in self.request.letta_code]
        return found

    def check_path(self, target: str, name: str, schema: str, before: Inventory, migrated: PathResult) -> PathResult:
        """The path's copy checked against ``target``: its schema, then the target started on it,
        every agent compared, a sample talked to, and Letta Code turns (letta-compat path)."""
        path = migrated.path
        schema_report = check_database(self.dsn(name), target, self.request.cache)
        checked = replace(migrated, schema_ready=schema_report.ready,
                          schema_problems=tuple(str(p) for p in schema_report.problems))
        self.say(f"{path}: schema check against {target}: "
                 + ("ready" if schema_report.ready else f"{len(schema_report.problems)} problem(s)"))
        began = time.monotonic()
        try:
            stack = self.backend.start_server(target, database=name)
        except LettaCompatError as exc:
            error = f"Letta {target} did not start: {str(exc).splitlines()[0][:300]}"
            self.say(f"{path}: {error}")
            return replace(checked, verdict="failed", error=error, agents=tuple(
                {"id": a.id, "name": a.name, "verdict": "lost", "before": a.summary(), "after": None,
                 "differences": ["server: the target did not start on this copy"]} for a in before.agents.values()))
        checked = replace(checked, server_started=True, server_seconds=time.monotonic() - began)
        try:
            with self.cluster.connect(name) as conn:
                base = sql_inventory(conn, schema)
            def connect():
                return self.connect_copy(name, schema)

            with LettaAPI(stack.url, api_key=stack.password) as api:
                compared = compare(before, api_inventory(api, base))
                checked = replace(checked, agents=compared.agents, not_checked=compared.not_checked,
                                  server_differences=compared.server_differences, verdict=compared.verdict)
                talked = exchange(api, connect, before, compared.agents, self.request.sample)
                checked = replace(checked, exchange=talked, verdict=after_exchange(checked.verdict, talked))
            if path == "letta-compat" and self.request.letta_code:
                self.letta_code_runs[target] = [
                    letta_code_turn(self.letta_code_installs[version], version, target, stack, connect, checked,
                                    self.fake.requests, self.workdir, self.say)
                    for version in self.request.letta_code]
        except LettaCompatError as exc:
            checked = replace(checked, verdict="failed", error=f"reading Letta {target}: {str(exc).splitlines()[0][:300]}")
        finally:
            stack.stop()
        if checked.verdict != "intact":  # a person reads what went wrong: its log outlives the rehearsal
            checked = replace(checked, log=self.keep_log(stack.log_path, f"{path}-{target}-letta-server.log"))
        counts = ", ".join(f"{n} {v}" for v, n in sorted(checked.counts().items()))
        self.say(f"{path}: {counts or 'no agents'}; verdict {checked.verdict}")
        return checked

    # -- Letta Code ------------------------------------------------------------------------
    def install_letta_code(self) -> None:
        from ..provision.letta_code import ensure_letta_code

        for version in self.request.letta_code:
            if version not in self.letta_code_installs:
                self.say(f"Letta Code {version}: installing (or found in the cache)")
                self.letta_code_installs[version] = ensure_letta_code(version, self.request.cache)


class LettaRehearsal:
    """A finished rehearsal whose upgraded copies are kept (the ``letta_rehearsal`` fixture):
    ``report`` (the JSON report as a dict), ``path(name)``, ``dsn(...)`` and ``start_server(...)``
    on a path's upgraded copy, for checks of one's own. ``close()`` removes everything."""

    def __init__(self, request: RehearsalRequest, progress: Progress = print):
        request.keep = True
        self._rehearsal = Rehearsal(request, progress)
        try:
            self.result = self._rehearsal.run()
        except BaseException:
            self._rehearsal.close()
            raise
        self.report = self.result.to_json()

    def target(self, version: str | None = None) -> dict:
        targets = self.report["targets"]
        return next(t for t in targets if version in (None, t["version"]))

    def path(self, name: str = "letta-compat", version: str | None = None) -> dict:
        return self.target(version)["paths"][name]

    def database(self, path: str = "letta-compat", version: str | None = None) -> str:
        return self._rehearsal.kept[(self.target(version)["version"], path)]

    def dsn(self, path: str = "letta-compat", version: str | None = None) -> str:
        return self._rehearsal.dsn(self.database(path, version))

    def start_server(self, path: str = "letta-compat", version: str | None = None):
        """The target release running on the path's upgraded copy (a LettaStack; stop() it)."""
        return self._rehearsal.backend.start_server(self.target(version)["version"], database=self.database(path, version))

    def close(self) -> None:
        self._rehearsal.close()


def rehearse(request: RehearsalRequest, progress: Progress = print) -> RehearsalReport:
    """Run a whole rehearsal; every server and database it made is gone when it returns."""
    rehearsal = Rehearsal(request, progress)
    try:
        return rehearsal.run()
    finally:
        rehearsal.close()


