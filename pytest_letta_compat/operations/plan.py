"""What an upgrade will do, decided before anything is touched (pure: no I/O but reading scripts).

The alembic history comes from the migration scripts of the newest sdist (the same scripts
the upgrade runs); revisions map back to releases through ``versions.py``.  A database may
sit anywhere from the old release's head to the new one's: a half-applied upgrade (the
seed incident's state) resumes from the revision alembic stamped last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import Version

from .. import versions
from ..errors import LettaCompatError
from ..provision.alembic import RevisionGraph
from ..versions import describe_revision

STRATEGIES = ("in-place", "recreate")


@dataclass
class UpgradePlan:
    from_version: str
    to_version: str
    strategy: str
    revision: str  # the database's alembic revision now
    revision_text: str
    pending: list[str] = field(default_factory=list)  # revisions an in-place upgrade applies

    @property
    def target_revision(self) -> str:
        return versions.server_release(self.to_version).alembic_head

    @property
    def resumes(self) -> bool:
        return self.revision != versions.server_release(self.from_version).alembic_head and bool(self.pending)


def check_versions(from_version: str, to_version: str, strategy: str = "in-place") -> None:
    for option, value in (("--from", from_version), ("--to", to_version)):
        versions.require_server_release(value, option)
    if Version(to_version) <= Version(from_version):
        raise LettaCompatError(f"--to {to_version} is not newer than --from {from_version}: an upgrade only goes "
                               "forward. To go back to the database of an older release, use "
                               "`letta-compat rollback --dsn DSN --backup DIR` with the backup made before the upgrade.")
    if strategy not in STRATEGIES:
        raise LettaCompatError(f"--strategy {strategy!r} is unknown. Allowed: {', '.join(STRATEGIES)}.")


def check_server_version(reported: str, from_version: str, to_version: str, url: str) -> None:
    if reported == from_version:
        return
    hint = (" The upgrade seems to have happened already (a server of the new version answers): run "
            f"`letta-compat verify --url {url} DIR` to check it." if reported == to_version else "")
    raise LettaCompatError(f"The server at {url} reports Letta {reported} (/v1/health/), but --from says "
                           f"{from_version}. Give --from the version that runs now, or point --url at the "
                           f"server that uses this database.{hint}")


def plan_upgrade(from_version: str, to_version: str, revision: str | None, graph: RevisionGraph, *,
                 strategy: str = "in-place") -> UpgradePlan:
    """Check that a database at ``revision`` can go from ``from_version`` to ``to_version``."""
    check_versions(from_version, to_version, strategy)
    low = versions.server_release(from_version).alembic_head
    high = versions.server_release(to_version).alembic_head
    text = describe_revision(revision, graph)
    if revision is None or revision not in graph.parents:
        raise LettaCompatError(f"The database's alembic revision is {text}. Only a database created by Letta's "
                               "migrations (the official image, or `alembic upgrade`) can be upgraded by this tool.")
    ancestors = graph.ancestors(revision)
    if low not in ancestors:
        raise LettaCompatError(f"The database is at {text}, which is older than Letta {from_version} (head {low}). "
                               f"Give --from the version the database belongs to.")
    if revision not in graph.ancestors(high):
        raise LettaCompatError(f"The database is at {text}, which is newer than Letta {to_version} "
                               f"(head {high}). Give --to a release at or after it.")
    return UpgradePlan(from_version, to_version, strategy, revision, text, graph.steps(revision, high))
