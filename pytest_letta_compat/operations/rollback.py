"""Put a Letta database back as it was at backup time, from the backup's pg_dump archive.

Nothing is dropped until the archive is proven good: present, its sha256 equal to the
manifest's, and readable by pg_restore. The database being replaced is dumped first, so a
rollback loses nothing either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LettaCompatError
from ..provision.install import ensure_migration_scripts
from ..postgres.client import pg_dump
from .backup import Manifest, load_backup
from .database import Layout, LettaDatabase, archive_schema
from ..versions import describe_revision, versions_at
from ..provision.alembic import RevisionGraph



@dataclass(frozen=True)
class VerifiedArchive:
    manifest: Manifest
    path: Path
    schema: str  # where Letta's tables are inside it


def verified_archive(backup_dir: Path) -> VerifiedArchive:
    """The backup, re-read whole (every file against its sha256 in manifest.json), and its
    pg_dump archive proven readable; a clear error otherwise. Destructive steps need one."""
    backup_dir = Path(backup_dir)
    try:
        manifest = load_backup(backup_dir)
    except LettaCompatError as exc:
        raise LettaCompatError(f"Refusing to use the backup in {backup_dir}: {exc} The database was not touched. "
                               "Make a new backup into an empty directory, or put the file back from a copy.") from None
    if not manifest.database_dump:
        raise LettaCompatError(f"The backup in {backup_dir} has no database archive: it was made without --dsn. "
                               "Nothing is migrated, dropped or restored without a pg_dump archive; make the backup "
                               "again with --dsn into an empty directory.")
    path = backup_dir / manifest.database_dump
    return VerifiedArchive(manifest, path, archive_schema(path))


def dump_before(database: LettaDatabase, backup_dir: Path, step: str, progress: Callable[[str], None]) -> Path:
    """Keep what a database holds before a step replaces it (writes since the backup included)."""
    target = backup_dir / f"before-{step}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump"
    progress(f"dumping the {database} as it is now to {target} (in case you want it back)")
    pg_dump(database.dsn, target)
    return target


@dataclass(frozen=True)
class RollbackReport:
    database: str
    revision: str | None
    versions: list[str]  # releases whose head the restored revision is (several may share one)
    belongs_to: str  # the same in words
    safety_dump: Path | None  # what the replaced database held, dumped before it was dropped


def rollback(dsn: str, backup_dir: Path, *, cache: Path, progress: Callable[[str], None] = print) -> RollbackReport:
    archive = verified_archive(Path(backup_dir))
    database = LettaDatabase(dsn)
    graph = RevisionGraph.from_scripts(ensure_migration_scripts(cache))  # before anything is dropped
    progress(f"archive {archive.path}: sha256 matches manifest.json, readable, Letta tables in schema {archive.schema}")
    safety_dump, owner = None, database.params.get("user", "postgres")
    if database.exists():
        database.require_quiet("roll back")
        with database.connect() as conn:
            owner = database.owner(conn)
        safety_dump = dump_before(database, Path(backup_dir), "rollback", progress)
    progress(f"replacing the {database} with the archive (drop, create, pg_restore)")
    database.restore_archive(archive.path, Layout(archive.schema, owner))
    with database.connect() as conn:
        revision = database.revision(conn, archive.schema)
    return RollbackReport(str(database), revision, versions_at(revision) if revision else [],
                          describe_revision(revision, graph), safety_dump)
