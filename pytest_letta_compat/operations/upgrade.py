"""Upgrade a self-hosted Letta database from one release to another, safely, in two phases.

Phase 1 (``apply_upgrade``, ``letta-compat upgrade --apply``), with the old server stopped:
check the backup → migrate in place to the new release's alembic head (or, strategy
``recreate``, drop and recreate the database and migrate it empty) → fix-ups.
The operator then starts the new server; the tool cannot, for Docker users.
Phase 2 (``finish_upgrade``, or ``letta-compat [restore and] verify``): with the new server
running, restore the agents (strategy ``recreate``) and verify every agent of the backup.

Nothing touches the database before a verified backup exists: the backup's manifest must
match this database and server, and its pg_dump archive must be intact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from .. import versions
from ..errors import LettaCompatError, redact, register_secret
from ..provision.install import ensure_migration_scripts
from ..provision.alembic import backfill_notes, upgrade_to_release
from .backup import backup
from .database import Layout, LettaDatabase
from .fixups import FixupResult, run_fixups
from ..rest.client import LettaAPI, LettaAPIError
from ..versions import describe_revision
from ..provision.alembic import RevisionGraph
from .plan import UpgradePlan, check_server_version, check_versions, plan_upgrade
from .rollback import VerifiedArchive, dump_before, verified_archive

Progress = Callable[[str], None]


@dataclass
class UpgradeRequest:
    from_version: str
    to_version: str
    dsn: str
    url: str
    backup_dir: Path
    cache: Path
    api_key: str | None = None
    strategy: str = "in-place"
    encryption_key: str | None = field(default=None, repr=False)  # the server's LETTA_ENCRYPTION_KEY, for alembic
    encryption_key_source: str = "--encryption-key-env"  # where it came from, as the plan names it

    def __post_init__(self) -> None:
        self.backup_dir = Path(self.backup_dir)
        self.url = self.url.rstrip("/")
        register_secret(self.api_key)
        register_secret(self.encryption_key)


@dataclass
class Assessment:
    """What is true now, read without changing anything."""

    request: UpgradeRequest
    database: LettaDatabase
    layout: Layout
    graph: RevisionGraph
    plan: UpgradePlan
    server_version: str | None  # None: nothing answers at the URL
    drift: list[FixupResult] = field(default_factory=list)
    backup_status: str = ""


# -- reading -----------------------------------------------------------------------------------
def server_version(url: str, api_key: str | None = None) -> str | None:
    """The release the server at ``url`` reports on /v1/health/, or None if nothing answers."""
    with LettaAPI(url, api_key=api_key, timeout=30) as api:
        try:
            return api.version
        except LettaAPIError as exc:
            if exc.status is None:
                return None
            raise


def assess(request: UpgradeRequest, *, with_backup: bool = True) -> Assessment:
    """Validate the inputs against the live database and server; read-only."""
    check_versions(request.from_version, request.to_version, request.strategy)
    database = LettaDatabase(request.dsn)
    with database.connect() as conn:
        layout = database.layout(conn)
        revision = database.revision(conn, layout.schema)
    graph = RevisionGraph.from_scripts(ensure_migration_scripts(request.cache))
    plan = plan_upgrade(request.from_version, request.to_version, revision, graph, strategy=request.strategy)
    reported = server_version(request.url, request.api_key)
    if reported is not None:
        check_server_version(reported, request.from_version, request.to_version, request.url)
    found = Assessment(request, database, layout, graph, plan, reported, run_fixups(database, apply=False))
    if not with_backup:
        return found
    try:
        archive = check_backup(found)
        found.backup_status = (f"verified: {len(archive.manifest.agents)} agents, pg_dump archive intact, "
                               "matches this database")
    except LettaCompatError as exc:
        if (request.backup_dir / "manifest.json").exists():
            found.backup_status = f"NOT USABLE, --apply will refuse: {exc}"
        else:
            found.backup_status = ("none yet: --apply makes one from the running server at --url and the database"
                                   if reported else f"none yet, and no server answers at {request.url} to make one "
                                   f"from: start Letta {request.from_version} there first")
    return found


# -- the backup gate ---------------------------------------------------------------------------
def check_backup(found: Assessment) -> VerifiedArchive:
    """The backup in the request's directory, proven to be a backup of this database now."""
    request = found.request
    archive = verified_archive(request.backup_dir)
    manifest = archive.manifest
    where = request.backup_dir / "manifest.json"
    if manifest.server_version != request.from_version:
        raise LettaCompatError(f"{where} is a backup of Letta {manifest.server_version}, not of --from "
                               f"{request.from_version}. Use a backup of the server as it runs now.")
    if manifest.alembic_revision not in found.graph.ancestors(found.plan.revision):
        raise LettaCompatError(f"{where} was taken at alembic revision {manifest.alembic_revision}, which this "
                               f"database ({found.plan.revision_text}) never went through: it is a backup of "
                               "another database. Make a new one into an empty directory.")
    backed_up = {agent.id for agent in manifest.agents}
    with found.database.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(found.layout.schema)))
        rows = conn.execute("SELECT id, hidden IS TRUE FROM agents WHERE NOT is_deleted").fetchall()
    in_database = {agent_id for agent_id, _hidden in rows}
    missing_from_backup = sorted(agent_id for agent_id, hidden in rows if not hidden and agent_id not in backed_up)
    gone = sorted(backed_up - in_database)
    if missing_from_backup or gone:
        raise LettaCompatError(
            f"{where} does not match the {found.database}: " + "; ".join(filter(None, [
                f"{len(missing_from_backup)} agent(s) in the database are not in the backup "
                f"({', '.join(missing_from_backup[:5])})" if missing_from_backup else "",
                f"{len(gone)} agent(s) of the backup are not in the database ({', '.join(gone[:5])})" if gone else ""]))
            + ". The backup is stale or of another server: make a new one into an empty directory.")
    if found.server_version is not None:
        with LettaAPI(request.url, api_key=request.api_key) as api:
            live = len(api.list_agents())
        if live != len(backed_up):
            raise LettaCompatError(f"{where} holds {len(backed_up)} agents, but the server at {request.url} lists "
                                   f"{live}. The backup is stale or of another server: make a new one.")
    return archive


def ensure_backup(found: Assessment, progress: Progress) -> VerifiedArchive:
    """Make the backup first when the directory holds none, then prove it."""
    request = found.request
    if not (request.backup_dir / "manifest.json").exists():
        if found.server_version is None:
            raise LettaCompatError(
                f"Refusing to upgrade without a backup: {request.backup_dir} holds none, and no server answers "
                f"at {request.url} to make one from. Start Letta {request.from_version} on this database, run "
                "the command again (it backs up every agent and the database), then stop the server and run it "
                "once more to migrate.")
        progress(f"backing up every agent of {request.url} and the {found.database} into {request.backup_dir}")
        backup(request.url, request.backup_dir, api_key=request.api_key, dsn=request.dsn, progress=progress)
    archive = check_backup(found)
    progress(f"backup {request.backup_dir}: verified ({len(archive.manifest.agents)} agents, "
             "pg_dump archive intact, matches the database)")
    return archive


# -- phase 1 -----------------------------------------------------------------------------------
@dataclass
class UpgradeOutcome:
    revision: str
    fixups: list[FixupResult]
    next_steps: list[str]


def apply_upgrade(request: UpgradeRequest, progress: Progress = print) -> UpgradeOutcome:
    """Backup gate → migrate (in place, or recreate empty) → fix-ups. The old server must be stopped."""
    found = assess(request, with_backup=False)
    ensure_backup(found, progress)
    if found.server_version is not None:
        raise LettaCompatError(
            f"The backup is verified, but Letta {found.server_version} still answers at {request.url}. Stop it "
            "(e.g. `docker compose stop letta`) and run the same command again: it reuses the backup and migrates.")
    database, plan = found.database, found.plan
    database.require_quiet("migrate")
    log = request.backup_dir / f"upgrade-to-{request.to_version}.log"
    if request.strategy == "recreate":
        dump_before(database, request.backup_dir, "recreate", progress)
        progress(f"dropping and recreating the {database} (schema {found.layout.schema} with pgvector, as "
                 f"init.sql lays it out); {request.backup_dir}/database.dump holds what it held")
        database.recreate(found.layout, lay_out=True)
        progress(f"migrating the empty database to {plan.target_revision} (Letta {request.to_version})")
    elif not plan.pending:
        progress(_nothing_to_migrate(request, plan.target_revision))
    else:
        progress(f"migrating from {plan.revision_text} to {plan.target_revision} (Letta {request.to_version}): "
                 f"{len(plan.pending)} revisions{resuming(plan)}")
    started = time.monotonic()
    try:
        upgrade_to_release(request.dsn, request.to_version, request.cache, log_path=log,
                           encryption_key=request.encryption_key)
    except LettaCompatError as exc:
        with database.connect() as conn:
            now = database.revision(conn, found.layout.schema)
        raise LettaCompatError(
            f"{exc}\nThe database is now at revision {now}. Re-run the same command to resume from there, or put "
            f"the database back with `letta-compat rollback --dsn DSN --backup {request.backup_dir}`. "
            f"Full log: {log}") from None
    progress(f"migrated in {time.monotonic() - started:.0f} s (log: {log})")
    for note in backfill_notes(log.read_text(encoding="utf-8", errors="replace")):
        progress(f"alembic: {note}")
    fixups = run_fixups(database, apply=True)
    for result in fixups:
        progress(f"fix-up {result}")
    with database.connect() as conn:
        revision = database.revision(conn, found.layout.schema)
    if revision != plan.target_revision:
        raise LettaCompatError(f"After the migration the database is at {revision}, not {plan.target_revision}; "
                               f"see {log}.")
    return UpgradeOutcome(revision, fixups, next_steps(request))


def resuming(plan: UpgradePlan) -> str:
    return (f" (the database is already past Letta {plan.from_version}'s head: alembic continues from where it "
            "stopped)" if plan.resumes else "")


def next_steps(request: UpgradeRequest) -> list[str]:
    key = " --api-key KEY" if request.api_key else ""
    steps = [f"start Letta {request.to_version} on this database (pin the image: letta/letta:{request.to_version}; "
             "its start-up migration finds nothing left to do)"]
    if request.strategy == "recreate":
        steps[0] += ("; keep every client away from it until verify has passed (stop them, or publish the port "
                     "only then): until restore has run, every agent answers 404, and a client that takes a 404 "
                     "for 'agent gone' creates a new, empty agent in its place (lettabot#342)")
        steps.append(f"letta-compat restore --url {request.url}{key} {request.backup_dir}")
    steps.append(f"letta-compat verify --url {request.url}{key} {request.backup_dir}")
    if request.strategy == "recreate":
        steps.append("let the clients back in")
    return steps


# -- phase 2 -----------------------------------------------------------------------------------
def finish_upgrade(request: UpgradeRequest, progress: Progress = print):
    """With the new server running: restore the agents (recreate) and verify them all."""
    from .restore import restore
    from .verify import verify

    reported = server_version(request.url, request.api_key)
    if reported != request.to_version:
        raise LettaCompatError(f"Expected Letta {request.to_version} at {request.url}, found "
                               f"{reported or 'nothing answering'}. Start the new server first.")
    if request.strategy == "recreate":
        report = restore(request.url, request.backup_dir, api_key=request.api_key, progress=progress)
        if not report.ok:
            raise LettaCompatError(f"Restoring the agents of {request.backup_dir} into {request.url} failed for "
                                   "some agents (see above); fix the cause and run it again: it resumes.")
    return verify(request.url, request.backup_dir, api_key=request.api_key)


# -- the plan, in words ------------------------------------------------------------------------
def _nothing_to_migrate(request: UpgradeRequest, target: str) -> str:
    """Why no revision is pending: the two releases share a head, or the database is there already."""
    if versions.share_head(request.from_version, request.to_version):
        return f"nothing to migrate: {request.from_version} and {request.to_version} share alembic head {target}"
    return f"the database is already at {target} (Letta {request.to_version}): nothing to migrate"


def format_plan(found: Assessment) -> str:
    request, plan = found.request, found.plan
    target = versions.server_release(request.to_version).alembic_head
    server = (f"Letta {found.server_version} answers at {request.url}" if found.server_version
              else f"nothing answers at {request.url} (stopped)")
    steps = [("backup", f"{request.backup_dir}: {found.backup_status}")]
    if request.strategy == "recreate":
        steps += [("recreate", f"dump the database as it is now, drop it and create it empty (schema "
                               f"{found.layout.schema} with pgvector, as init.sql does); only with the verified "
                               "pg_dump archive"),
                  ("migrate", f"alembic upgrade {target} on the empty database")]
    elif plan.pending:
        steps.append(("migrate", f"alembic upgrade {target}: {len(plan.pending)} revisions{resuming(plan)}, with the "
                                 f"scripts of the letta-{versions.MIGRATIONS_SOURCE} sdist, as the official image "
                                 "runs them at start; " + (
                                     f"LETTA_ENCRYPTION_KEY from {request.encryption_key_source} in alembic's "
                                     "environment (Letta's data-encryption backfills run)"
                                     if request.encryption_key else
                                     "no LETTA_ENCRYPTION_KEY (Letta's data-encryption backfills are skipped; "
                                     "--encryption-key-env NAME passes yours)")))
    else:
        steps.append(("migrate", _nothing_to_migrate(request, target)))
    steps.append(("fix-ups", "; ".join(str(r) for r in found.drift) + " (checked again after the migration)"))
    steps.append(("switch", f"you: stop Letta {request.from_version}, start Letta {request.to_version} on this "
                            "database"))
    steps += [("restore" if "restore" in s else "verify", s) for s in next_steps(request)[1:]]
    lines = [f"Upgrade plan: Letta {request.from_version} -> {request.to_version}, strategy {request.strategy}, "
             f"{found.database} (tables in schema {found.layout.schema})",
             f"  now:    {plan.revision_text}",
             f"  target: {describe_revision(target)}",
             f"  server: {server}"]
    lines += [f"  {i}. {name:<9}{text}" for i, (name, text) in enumerate(steps, 1)]
    return redact("\n".join(lines))
