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

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from .. import versions
from ..errors import LettaCompatError, redact
from ..provision.alembic import backfill_notes, encryption_key_from, upgrade_to_release
from ..provision.fake_llm import FakeLLM
from ..provision.install import ensure_migration_scripts
from ..rest.agents import blocks_of
from ..rest.client import LettaAPI, LettaAPIError
from ..postgres.client import pg_dump, run_pg_tool, shown_dsn
from ..report.rehearsal import PATHS, path_problems, to_html as rehearsal_html
from ..postgres.layout import create_database, drop_public
from ..schema.compare import check_database
from ..schema.inspect import find_letta_schema
from .database import LettaDatabase, archive_schema
from .fixups import run_fixups
from .redirect import redirect_to_fake_llm
from .inventory import Inventory, api_inventory, compare_agent, compare_server, not_checked, sql_inventory
from ..versions import describe_revision, versions_at
from ..provision.alembic import RevisionGraph

Progress = Callable[[str], None]
SOURCE_DB = "rehearsal_source"
EXCHANGE_TEXT = "letta-compat rehearsal: are you still there?"


@dataclass
class RehearsalRequest:
    targets: list[str]
    cache: Path
    dump: Path | None = None
    dsn: str | None = None
    encryption_key_env: str | None = None
    letta_code: list[str] = field(default_factory=list)  # Letta Code versions that resume an agent of the dump
    sample: int = 3
    workdir: Path | None = None
    postgres_major: int = 16
    keep: bool = False  # keep each path's upgraded copy until close() (the letta_rehearsal fixture)
    backend: str = "native"  # where the copies and servers live: "native" or "docker" (backends.make_backend)

    def __post_init__(self) -> None:
        from ..matrix.model import BACKENDS

        if self.backend not in BACKENDS:
            raise LettaCompatError(f"--backend {self.backend!r} is not a backend. Allowed: {', '.join(BACKENDS)}.")
        if (self.dump is None) == (self.dsn is None):
            raise LettaCompatError("Give exactly one of --dump FILE (a pg_dump of Letta's database) or --dsn DSN "
                                   "(a live database, only ever read).")
        if not self.targets:
            raise LettaCompatError("Give at least one --to VERSION, e.g. --to 0.16.8.")
        for target in self.targets:
            if versions.server_release(target) is None:
                raise LettaCompatError(f"--to {target!r} is not a Letta server release this tool knows. Allowed: "
                                       f"{', '.join(versions.known_server_versions())}.")
        if self.encryption_key_env is not None:
            encryption_key_from(self.encryption_key_env)  # unset or empty: one line, before anything runs
        for version in self.letta_code:
            if not versions.is_known_letta_code(version):
                from ..versions_letta_code import describe_allowed

                raise LettaCompatError(f"--letta-code {version!r} is not in the Letta Code release table. "
                                       f"Allowed: {describe_allowed()}.")
        if self.dump is not None:
            self.dump = Path(self.dump)
            if not self.dump.is_file():
                raise LettaCompatError(f"--dump {self.dump}: no such file. Take one with `docker exec letta-db "
                                       "pg_dump -U letta -Fc letta > letta.dump`.")
        if self.dsn is not None:
            LettaDatabase(self.dsn)  # a malformed DSN fails here, one line, password masked

    @property
    def encryption_key(self) -> str | None:
        return encryption_key_from(self.encryption_key_env) if self.encryption_key_env else None


# -- the report ----------------------------------------------------------------------------
@dataclass
class PathResult:
    path: str
    verdict: str = "intact"  # intact | changed | lost | failed
    error: str | None = None
    migration_seconds: float | None = None
    migration_notes: list[str] = field(default_factory=list)  # what Letta's data-encryption backfills did
    fixups: list[str] = field(default_factory=list)
    schema_ready: bool | None = None
    schema_problems: list[str] = field(default_factory=list)
    server_started: bool = False
    server_seconds: float | None = None
    agents: list[dict] = field(default_factory=list)
    server_differences: list[str] = field(default_factory=list)
    exchange: list[dict] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    log: str | None = None

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for agent in self.agents:
            found[agent["verdict"]] = found.get(agent["verdict"], 0) + 1
        return found


@dataclass
class RehearsalReport:
    source: dict[str, Any]
    targets: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    backend: str = "native"

    @property
    def intact(self) -> bool:
        return all(t["paths"]["letta-compat"]["verdict"] == "intact" for t in self.targets)

    @property
    def letta_code_works(self) -> bool:
        return all(run["verdict"] == "works" for t in self.targets for run in t.get("letta_code", []))

    @property
    def ok(self) -> bool:
        """Every agent intact on the letta-compat path, and every Letta Code asked for resumed one."""
        return self.intact and self.letta_code_works

    def to_json(self) -> dict:
        doc = {"verdict": "intact" if self.intact else "not intact", "backend": self.backend,
               "source": self.source, "targets": self.targets,
               "timings": {k: round(v, 1) for k, v in self.timings.items()}}
        if any("letta_code" in t for t in self.targets):
            doc["letta_code_verdict"] = "works" if self.letta_code_works else "fails"
        return doc


# -- reading the source --------------------------------------------------------------------
_PLAIN_ALEMBIC = re.compile(r"^CREATE TABLE (?:(\S+)\.)?alembic_version \(", re.M)
_PLAIN_ROLES = re.compile(r"(?:OWNER TO|GRANT .* TO|AUTHORIZATION) (\"[^\"]+\"|[A-Za-z_][\w$]*)")


def dump_format(path: Path) -> str:
    """``custom`` (pg_dump -Fc) or ``plain`` (SQL); anything else is refused in one line."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"PGDMP"):
        return "custom"
    if head.startswith(b"\x1f\x8b"):
        raise LettaCompatError(f"--dump {path} is gzip-compressed: gunzip it first (or take it with "
                               "`pg_dump -Fc`, which compresses by itself).")
    text = head.decode("utf-8", "replace")
    if "PostgreSQL database dump" in text or re.search(r"^(SET|CREATE|COPY|INSERT) ", text, re.M):
        return "plain"
    raise LettaCompatError(f"--dump {path} is not a PostgreSQL dump (neither pg_dump's custom format nor plain "
                           "SQL). Take one with `docker exec letta-db pg_dump -U letta -Fc letta > letta.dump`.")


def plain_dump_facts(path: Path) -> tuple[str, set[str]]:
    """(schema of alembic_version, roles the script names) of a plain SQL dump, read as a stream."""
    schema, roles = None, set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("CREATE TABLE") and schema is None:
                match = _PLAIN_ALEMBIC.match(line)
                if match:
                    schema = match.group(1) or "public"
            elif "OWNER TO" in line or line.startswith(("GRANT", "CREATE SCHEMA")):
                roles.update(r.strip('"') for r in _PLAIN_ROLES.findall(line))
    if schema is None:
        raise LettaCompatError(f"--dump {path} holds no alembic_version table: it is not a dump of a Letta database.")
    return schema, roles - {"PUBLIC", "public"}


_COPY_ALEMBIC = re.compile(r"^COPY (?:\S+\.)?alembic_version \(version_num\) FROM stdin;$")
_INSERT_ALEMBIC = re.compile(r"^INSERT INTO (?:\S+\.)?alembic_version (?:\(version_num\) )?VALUES \('([^']+)'\);$")


def dump_revision(path: Path, kind: str) -> str | None:
    """The alembic revision a dump holds, read without restoring it (pg_restore -a -t for the
    custom format; a streamed scan of a plain script)."""
    if kind == "custom":
        try:
            text = run_pg_tool("pg_restore", ["-a", "-t", "alembic_version", "-f", "-", str(path)])
        except LettaCompatError as exc:
            raise LettaCompatError(f"--dump {path} cannot be read: {str(exc).splitlines()[0][:300]}") from None
        lines = iter(text.splitlines())
    else:
        lines = open(path, encoding="utf-8", errors="replace")
    try:
        for line in lines:
            line = line.rstrip("\n")
            if _COPY_ALEMBIC.match(line):
                value = next(lines, "\\.").rstrip("\n")
                return None if value == "\\." else value.strip()
            match = _INSERT_ALEMBIC.match(line)
            if match:
                return match.group(1)
    finally:
        if kind != "custom":
            lines.close()
    return None


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

    def restore_source(self, dump: Path) -> tuple[str, str]:
        """(format, schema): the dump restored into database SOURCE_DB."""
        kind = dump_format(dump)
        if kind == "custom":
            schema = archive_schema(dump)
            roles: set[str] = set()
        else:
            schema, roles = plain_dump_facts(dump)
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
        return kind, found

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
        kind = dump_format(dump)
        schema = archive_schema(dump) if kind == "custom" else plain_dump_facts(dump)[0]
        graph = RevisionGraph.from_scripts(ensure_migration_scripts(request.cache))
        source = self.where_it_stands(dump_revision(dump, kind), graph, schema, kind, dump)
        targets = self.reachable_targets(source["revision"], graph, source)
        self.install_letta_code()
        self._start(targets)
        kind, schema = self.restore_source(dump)
        source["schema"] = schema
        with self.cluster.connect(SOURCE_DB) as conn:
            if LettaDatabase.revision(conn, schema) != source["revision"]:
                raise LettaCompatError(f"--dump {dump}: the restored database is at another alembic revision than "
                                       "the dump's table of contents says; the dump is inconsistent.")
        source["drift"] = self.drift(source)
        source["redirected"] = self.redirect(SOURCE_DB)
        for line in source["redirected"]:
            self.say(f"safety: {line}")
        before = self.inventory_before(source, schema)
        source["agents"] = len(before.agents)
        source["stored_messages"] = before.messages
        source["inventory_via"] = before.via
        report = RehearsalReport(source, timings=self.timings, backend=request.backend)
        for target in targets:
            report.targets.append(self.rehearse_target(target, before, schema))
        self.timings["total"] = time.monotonic() - self.started
        return report

    def where_it_stands(self, revision: str | None, graph: RevisionGraph, schema: str, kind: str,
                        dump: Path) -> dict[str, Any]:
        where = shown_dsn(self.request.dsn) if self.request.dsn else str(dump)
        if revision is None:
            raise LettaCompatError(f"{where} has no alembic revision (an empty alembic_version table): it is not a "
                                   "database Letta's migrations created.")
        if revision not in graph.parents:
            raise LettaCompatError(f"{where} is at alembic revision {revision}, which no Letta release's migrations "
                                   f"know (the letta-{versions.MIGRATIONS_SOURCE} scripts hold every release's): it "
                                   "is not a Letta database, or one changed by hand.")
        releases = versions_at(revision)
        state = "release head" if releases else "half-applied upgrade"
        source: dict[str, Any] = {"kind": "dsn" if self.request.dsn else "dump", "where": where, "format": kind,
                                  "schema": schema, "revision": revision, "releases": releases, "state": state,
                                  "described": describe_revision(revision, graph)}
        self.say(f"where it stands: {source['described']}")
        return source

    def drift(self, source: dict[str, Any]) -> list[str]:
        """``schema check`` against the dump's own release, and what the fix-ups would repair."""
        drift: list[str] = []
        if source["releases"]:
            own = source["releases"][-1]
            report = check_database(self.dsn(SOURCE_DB), own, self.request.cache)
            drift = [str(p) for p in report.problems]
            source["drift_checked_against"] = own
        else:
            source["drift_checked_against"] = None
            drift.append(f"not a release's schema: {source['described']}")
        drift += [str(r) for r in run_fixups(LettaDatabase(self.dsn(SOURCE_DB)), apply=False) if r.drift]
        for line in drift:
            self.say(f"drift: {line}")
        if not drift:
            self.say(f"drift: none (schema check against Letta {source['drift_checked_against']})")
        return drift

    def reachable_targets(self, revision: str, graph: RevisionGraph, source: dict) -> list[str]:
        reachable, skipped = [], []
        for target in self.request.targets:
            head = versions.server_release(target).alembic_head
            (reachable if revision in graph.ancestors(head) else skipped).append(target)
        if not reachable:
            raise LettaCompatError(f"The dump is at {source['described']}, newer than every --to "
                                   f"({', '.join(self.request.targets)}): a rehearsal only goes forward. Give a "
                                   "later release.")
        for target in skipped:
            self.say(f"skipping --to {target}: it is older than the dump")
        source["skipped_targets"] = skipped
        return reachable

    def inventory_before(self, source: dict, schema: str) -> Inventory:
        with self.cluster.connect(SOURCE_DB) as conn:
            base = sql_inventory(conn, schema)
        self.say(f"before: {len(base.agents)} agents, {base.messages} stored messages (SQL)")
        if not source["releases"]:
            self.say("before: the dump is between releases, so no server of its own can read it: the inventory "
                     "is the SQL one")
            return base
        own = source["releases"][-1]
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
        results = {path: PathResult(path) for path in PATHS}
        began = time.monotonic()
        try:
            upgrade_to_release(self.dsn(image_db), target, self.request.cache, log_path=log,
                               encryption_key=self.request.encryption_key)
        except LettaCompatError as exc:
            with self.cluster.connect(image_db) as conn:
                now = LettaDatabase.revision(conn, schema)
            for result in results.values():
                result.verdict, result.error = "failed", (f"alembic upgrade to {target} failed, the database stopped "
                                                          f"at {now}: {str(exc).splitlines()[-1][:300]}")
            self.say(f"image: {results['image'].error}")
            found = {"version": target, "paths": {p: self._path_json(r, before) for p, r in results.items()}}
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
        fixed = run_fixups(LettaDatabase(self.dsn(compat_db)), apply=True)
        results["letta-compat"].fixups = [str(r) for r in fixed]
        for path, name in (("image", image_db), ("letta-compat", compat_db)):
            result = results[path]
            result.migration_seconds, result.migration_notes = seconds, list(notes)
            for line in result.fixups:
                if "nothing to do" not in line:
                    self.say(f"{path}: fix-up {line}")
            self.check_path(target, name, schema, before, result)
            if self.request.keep:
                self.kept[(target, path)] = name
            else:
                self.backend.drop_database(name)
        found = {"version": target, "paths": {p: self._path_json(r, before) for p, r in results.items()}}
        if self.request.letta_code:
            found["letta_code"] = self.letta_code_runs.get(target) or [
                {"version": v, "verdict": "fails", "evidence": "not run: the target did not start on the letta-compat "
                 "path's copy" if not results["letta-compat"].server_started else "not run"}
                for v in self.request.letta_code]
        return found

    def check_path(self, target: str, name: str, schema: str, before: Inventory, result: PathResult) -> None:
        schema_report = check_database(self.dsn(name), target, self.request.cache)
        result.schema_ready = schema_report.ready
        result.schema_problems = [str(p) for p in schema_report.problems]
        self.say(f"{result.path}: schema check against {target}: "
                 + ("ready" if schema_report.ready else f"{len(schema_report.problems)} problem(s)"))
        began = time.monotonic()
        try:
            stack = self.backend.start_server(target, database=name)
        except LettaCompatError as exc:
            result.verdict, result.error = "failed", f"Letta {target} did not start: {str(exc).splitlines()[0][:300]}"
            self.say(f"{result.path}: {result.error}")
            result.agents = [{"id": a.id, "name": a.name, "verdict": "lost", "before": a.summary(), "after": None,
                              "differences": ["server: the target did not start on this copy"]}
                             for a in before.agents.values()]
            return
        result.server_started, result.server_seconds = True, time.monotonic() - began
        result.log = str(stack.log_path)
        try:
            with self.cluster.connect(name) as conn:
                base = sql_inventory(conn, schema)
            with LettaAPI(stack.url, api_key=stack.password) as api:
                after = api_inventory(api, base)
                self.compare(before, after, result)
                self.exchange(api, name, schema, before, result)
            if result.path == "letta-compat" and self.request.letta_code:
                self.letta_code_runs[target] = [self.letta_code_turn(version, target, stack, name, schema, result)
                                                for version in self.request.letta_code]
        except LettaCompatError as exc:
            result.verdict, result.error = "failed", f"reading Letta {target}: {str(exc).splitlines()[0][:300]}"
        finally:
            stack.stop()
        counts = ", ".join(f"{n} {v}" for v, n in sorted(result.counts().items()))
        self.say(f"{result.path}: {counts or 'no agents'}; verdict {result.verdict}")

    def compare(self, before: Inventory, after: Inventory, result: PathResult) -> None:
        for agent_id, was in before.agents.items():
            now = after.agents.get(agent_id)
            verdict, diffs = compare_agent(was, now)
            result.agents.append({"id": agent_id, "name": was.name, "verdict": verdict, "before": was.summary(),
                                  "after": now.summary() if now else None, "differences": diffs})
            result.not_checked += [f"agent {was.name!r}: {line}" for line in not_checked(was, now)]
        result.server_differences = compare_server(before.server, after.server)
        verdicts = {a["verdict"] for a in result.agents}
        if "lost" in verdicts:
            result.verdict = "lost"
        elif "changed" in verdicts or result.server_differences:
            result.verdict = "changed"

    def exchange(self, api: LettaAPI, name: str, schema: str, before: Inventory, result: PathResult) -> None:
        """One real message (fake LLM) with a sample: the longest history, odd names, secrets."""
        present = [a for a in before.agents.values()
                   if any(r["id"] == a.id and r["verdict"] in ("intact", "changed") for r in result.agents)]
        picks: list = []
        for chooser in (lambda a: a.stored_messages, lambda a: not re.fullmatch(r"[A-Za-z0-9 _-]+", a.name),
                        lambda a: bool(a.env_vars)):
            for agent in sorted(present, key=chooser, reverse=True):
                if agent not in picks and chooser(agent):
                    picks.append(agent)
                    break
        for agent in present:
            if len(picks) >= self.request.sample:
                break
            if agent not in picks:
                picks.append(agent)
        for agent in picks[:self.request.sample]:
            with self.cluster.connect(name) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                (stored,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                         (agent.id,)).fetchone()
            entry = {"id": agent.id, "name": agent.name, "ok": False, "detail": ""}
            try:
                body = api.json(api.request("POST", f"/v1/agents/{agent.id}/messages",
                                            json={"messages": [{"role": "user", "content": EXCHANGE_TEXT}]}),
                                "POST", f"/v1/agents/{agent.id}/messages")
                with self.cluster.connect(name) as conn:
                    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                    (now,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                          (agent.id,)).fetchone()
                replies = len(body.get("messages") or []) if isinstance(body, dict) else 0
                entry["ok"] = now > stored and replies > 0
                entry["detail"] = (f"answered with {replies} message(s); stored messages {stored} -> {now}"
                                   if entry["ok"] else f"answered 200 but stored messages {stored} -> {now} "
                                   f"(the new turn was not kept)")
            except LettaAPIError as exc:
                entry["detail"] = f"failed: {str(exc)[:300]}"
            result.exchange.append(entry)
            if not entry["ok"] and result.verdict == "intact":
                result.verdict = "changed"

    # -- Letta Code ------------------------------------------------------------------------
    def install_letta_code(self) -> None:
        from ..provision.letta_code import ensure_letta_code

        for version in self.request.letta_code:
            if version not in self.letta_code_installs:
                self.say(f"Letta Code {version}: installing (or found in the cache)")
                self.letta_code_installs[version] = ensure_letta_code(version, self.request.cache)

    def letta_code_turn(self, version: str, target: str, stack, name: str, schema: str,
                        result: PathResult) -> dict[str, str]:
        """A headless Letta Code turn that resumes an agent of the dump (``--agent ID``) on the
        target running on the letta-compat path's copy: the agent with the longest history
        among those that came through. ``works`` when the turn completes on that agent and is stored."""
        from ..provision.letta_code import LettaCodeTimeout, run_letta_code

        verdict = {"version": version, "verdict": "fails", "evidence": ""}
        present = [a for a in result.agents if a["verdict"] == "intact" and a["after"] and not a["after"]["hidden"]]
        if not present:
            verdict["evidence"] = "not run: no agent of the dump came through intact to resume"
            return verdict
        agent = max(present, key=lambda a: (a["after"]["stored_messages"], a["id"]))

        def stored() -> tuple[int, str | None]:
            with self.cluster.connect(name) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                (count,) = conn.execute("SELECT count(*) FROM messages WHERE agent_id = %s AND NOT is_deleted",
                                        (agent["id"],)).fetchone()
                (kind,) = conn.execute("SELECT agent_type::text FROM agents WHERE id = %s", (agent["id"],)).fetchone()
            return count, kind

        def shape() -> tuple[set[str], set[str]]:  # (block labels, tool names) as a client sees them
            try:
                with LettaAPI(stack.url, api_key=stack.password) as api:
                    state = api.find_agent(agent["id"]) or {}
            except LettaAPIError:
                state = {}
            return {b["label"] for b in blocks_of(state)}, {t["name"] for t in state.get("tools") or []}

        before, agent_type = stored()
        shape_before = shape()
        token = f"letta-compat rehearsal, Letta Code {version}: {os.urandom(6).hex()}"
        where = self.workdir / f"letta-code-{version}-to-{target}"
        shown = f"agent {agent['name']!r} ({agent['id']}, {agent_type}, {before} stored messages)"
        self.say(f"letta-compat: Letta Code {version} resuming {shown}")
        try:
            run = run_letta_code(self.letta_code_installs[version], ["-p", token, "--agent", agent["id"]],
                                 base_url=stack.url, api_key=stack.password, home=where / "home",
                                 cwd=where / "project", json=True)
        except LettaCodeTimeout as exc:
            verdict["evidence"] = f"resuming {shown}: {str(exc).splitlines()[0][:300]}"
            return verdict
        after, _ = stored()
        shape_after = shape()
        changed = [f"{what} {sign}{sorted(names)}" for what, was, now in
                   (("blocks", shape_before[0], shape_after[0]), ("tools", shape_before[1], shape_after[1]))
                   for sign, names in (("+", now - was), ("-", was - now)) if names]
        answer = run.json if isinstance(run.json, dict) else {}
        seen = [r["body"] for r in self.fake.requests
                if r["path"].endswith("/chat/completions") and token in json.dumps(r["body"])]
        context = f"the model's request carried {len(seen[-1].get('messages') or [])} messages" if seen else \
            "the fake LLM received no request with the prompt"
        if seen and any(e["id"] == agent["id"] and e["ok"] for e in result.exchange):
            context += (", among them the rehearsal's earlier exchange with it" if EXCHANGE_TEXT in json.dumps(seen[-1])
                        else ", not the rehearsal's earlier exchange with it (a new conversation)")
        if run.returncode == 0 and answer.get("subtype") == "success" and answer.get("agent_id") == agent["id"] \
                and after > before:
            verdict["verdict"] = "works"
            verdict["evidence"] = (f"`letta -p ... --agent {agent['id']}` resumed {shown}: exit 0, answered "
                                   f"{str(answer.get('result'))[:80]!r}, stored messages {before} -> {after}; {context}")
        else:
            got = answer.get("agent_id")
            verdict["evidence"] = (f"`letta -p ... --agent {agent['id']}` on {shown}: exit {run.returncode}"
                                   + (f", answered on another agent {got}" if got and got != agent["id"] else "")
                                   + f", stored messages {before} -> {after}; {context}: {run.error_line()[:300]}")
        if changed:  # what resuming an agent with Letta Code does to it, worth knowing before the switch
            verdict["evidence"] += f"; Letta Code changed the agent: {', '.join(changed)}"
        self.say(f"letta-compat: Letta Code {version} {verdict['verdict']}: {verdict['evidence']}")
        return verdict

    @staticmethod
    def _path_json(result: PathResult, before: Inventory) -> dict[str, Any]:
        data = asdict(result)
        data.pop("path")
        data["counts"] = result.counts()
        return data


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


# -- output --------------------------------------------------------------------------------
def format_report(report: RehearsalReport) -> list[str]:
    src = report.source
    lines = [f"Rehearsed on the {report.backend} backend",
             f"Source: {src['where']} ({src['format']} dump, schema {src['schema']}): {src['described']}",
             f"  {src['agents']} agents, {src['stored_messages']} stored messages (inventory through "
             f"{src['inventory_via']})"]
    lines += [f"  drift: {d}" for d in src["drift"]] or ["  drift: none"]
    for target in report.targets:
        for path in PATHS:
            p = target["paths"][path]
            counts = ", ".join(f"{n} {v}" for v, n in sorted(p["counts"].items()))
            lines.append(f"Letta {target['version']}, {path} path: {p['verdict'].upper()} ({counts or 'no agents'})")
            if path == "image":
                lines += [f"  alembic: {n}" for n in p.get("migration_notes", [])]
            if path == "letta-compat":
                lines += [f"  fix-up {f}" for f in p["fixups"] if "nothing to do" not in f]
                lines += [f"  {agent['verdict']:<8} {agent['name']!r}" for agent in p["agents"]]
            for problem in path_problems(p):
                lines.append(("  WARNING (a plain tag bump): " if path == "image" else "  ") + problem)
            lines += [f"  not checked: {n}" for n in p["not_checked"]]
        for run in target.get("letta_code", []):
            lines.append(f"Letta {target['version']}, Letta Code {run['version']} resuming an agent of the dump: "
                         f"{run['verdict'].upper()}: {run['evidence']}")
    lines.append("VERDICT: every agent came through the letta-compat path intact" if report.intact else
                 "VERDICT: something was lost or changed on the letta-compat path (see above)")
    if not report.letta_code_works:
        lines.append("VERDICT: a Letta Code version asked for with --letta-code could not resume an agent (see above)")
    return lines


def write_report(report: RehearsalReport, path: Path) -> list[Path]:
    """JSON, and Markdown/HTML by suffix (a bare name writes all three)."""
    path = Path(path)
    data = report.to_json()
    suffixes = [path.suffix] if path.suffix in (".json", ".md", ".html") else [".json", ".md", ".html"]
    base = path.with_suffix("") if path.suffix in (".json", ".md", ".html") else path
    written = []
    for suffix in suffixes:
        target = base.with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            text = json.dumps(data, indent=1, ensure_ascii=False)
        elif suffix == ".md":
            text = "# Letta upgrade rehearsal\n\n" + "\n".join(f"    {line}" for line in format_report(report)) + "\n"
        else:
            text = rehearsal_html(data)
        target.write_text(redact(text), encoding="utf-8")
        written.append(target)
    return written

