"""Facts about Letta releases that the plugin relies on, one row per version.

Release dates are the PyPI upload times; ``exclude_newer`` pins every dependency to what
existed right after the release (an unpinned install of 0.11.3 or 0.16.2 no longer
imports: newer pydantic breaks mcp).  Alembic heads come from each release tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from . import versions_letta_code as _letta_code
from .errors import LettaCompatError


@dataclass(frozen=True)
class ServerRelease:
    version: str
    released: str  # PyPI upload date (UTC)
    exclude_newer: str  # uv --exclude-newer timestamp used for its dependencies
    alembic_head: str
    pins: tuple[str, ...] = ()  # what a fresh install needs besides the release (its own bugs)

    @property
    def pip_spec(self) -> str:
        return f"letta[postgres,server,redis]=={self.version}"


def _row(version: str, released: str, exclude_newer: str, head: str, pins: tuple[str, ...] = ()) -> ServerRelease:
    return ServerRelease(version, released, f"{exclude_newer}T00:00:00Z", head, pins)


_FASTAPI_BEFORE_0_119 = ("fastapi<0.119",)

SERVER_RELEASES: dict[str, ServerRelease] = {
    r.version: r
    for r in [
        # openai 1.99.2 (2025-08-07) moved ``Function`` and made the tool-call type a Union: a fresh
        # install of 0.11.0 exits at its first import, and 0.11.2 answers 500 to POST /v1/agents/
        # ("Cannot instantiate typing.Union"; 0.11.3 fixed it): both need the openai before it
        _row("0.11.0", "2025-08-07", "2025-08-09", "05c3bc564286", ("openai==1.99.1",)),
        _row("0.11.2", "2025-08-08", "2025-08-10", "5fb8bba2c373", ("openai==1.99.1",)),
        _row("0.11.3", "2025-08-12", "2025-08-13", "5fb8bba2c373"),
        _row("0.11.4", "2025-08-20", "2025-08-22", "ffb17eb241fc"),
        _row("0.11.5", "2025-08-26", "2025-08-28", "ffb17eb241fc"),
        _row("0.11.6", "2025-08-27", "2025-08-29", "ffb17eb241fc"),
        _row("0.11.7", "2025-09-04", "2025-09-06", "ddb69be34a72"),
        _row("0.12.0", "2025-10-09", "2025-10-11", "c734cfc0d595"),
        _row("0.12.1", "2025-10-09", "2025-10-11", "c734cfc0d595"),
        # fastapi 0.120-0.122 (what these resolve to) cannot build Letta's OpenAPI schema: the
        # server exits at start with KeyError '$ref' (fastapi/_compat/v2.py); 0.16.0 gets a fixed one
        _row("0.13.0", "2025-10-24", "2025-10-26", "f6cd5a1e519d", _FASTAPI_BEFORE_0_119),
        _row("0.14.0", "2025-11-14", "2025-11-16", "b1c2d3e4f5a6", _FASTAPI_BEFORE_0_119),
        _row("0.15.0", "2025-11-25", "2025-11-27", "b1c2d3e4f5a6", _FASTAPI_BEFORE_0_119),
        _row("0.15.1", "2025-11-26", "2025-11-28", "b1c2d3e4f5a6", _FASTAPI_BEFORE_0_119),
        _row("0.16.0", "2025-12-15", "2025-12-17", "d0880aae6cee"),
        _row("0.16.1", "2025-12-18", "2025-12-20", "39577145c45d"),
        _row("0.16.2", "2026-01-12", "2026-01-14", "27de0f58e076"),
        _row("0.16.4", "2026-01-29", "2026-01-31", "a1b2c3d4e5f8"),
        _row("0.16.5", "2026-02-24", "2026-02-26", "b2c3d4e5f6a8"),
        _row("0.16.6", "2026-03-04", "2026-03-06", "b2c3d4e5f6a8"),
        _row("0.16.7", "2026-03-31", "2026-04-02", "1c28e167b74f"),
        _row("0.16.8", "2026-05-14", "2026-05-16", "1c28e167b74f"),
    ]
}

# The newest server sdist on PyPI: its alembic/ tree covers every release above (the
# history only ever adds revisions), so every version is migrated with these scripts.
MIGRATIONS_SOURCE = "0.16.8"
MIGRATIONS_SDIST_SHA256 = "363e26989e552c859ce2e7961d484acee6fccfc1e7b16e8f644b1ae1ccd754a3"

# Letta Code releases come from the shipped release table (versions_letta_code.py).
LETTA_CODE_NPM_VERSIONS = tuple(r.version for r in _letta_code.releases() if r.installs and r.source == "npm")
# From 0.32.13 on, PyPI's ``letta`` is Letta Code with its own Node runtime.
LETTA_CODE_PYPI_MIN = _letta_code.PYPI_MIN

POSTGRES_EMBEDDED_MAJORS = (16, 18)
POSTGRES_MIN_MAJOR = 15  # 39577145c45d (0.16.1) uses UNIQUE NULLS NOT DISTINCT


def spelled(text: str) -> str:
    """A release as an operator may write it: ``v0.16.2`` (as image tags are) is ``0.16.2``."""
    text = text.strip()
    return text[1:] if text[:1] in ("v", "V") and text[1:2].isdigit() else text


def server_release(version: str) -> ServerRelease | None:
    return SERVER_RELEASES.get(version)


def known_server_versions() -> list[str]:
    return sorted(SERVER_RELEASES, key=Version)


def require_server_release(version: str, what: str = "Letta server version",
                           error: type[Exception] = LettaCompatError) -> ServerRelease:
    """The release ``version``, or ``error``: "<what> '<version>' is not a Letta server
    release this tool knows. Allowed: ..." (``what`` names the option or key it came from)."""
    release = SERVER_RELEASES.get(version) if isinstance(version, str) else None
    if release is None:
        raise error(f"{what} {version!r} is not a Letta server release this tool knows. "
                    f"Allowed: {', '.join(known_server_versions())}.")
    return release


def versions_at(revision: str | None) -> list[str]:
    """Releases whose alembic head is ``revision`` (several releases may share one)."""
    return [v for v in known_server_versions() if SERVER_RELEASES[v].alembic_head == revision]


def same_head_groups() -> list[list[str]]:
    """Releases that share one alembic head (an upgrade between them has nothing to migrate), oldest first."""
    groups: dict[str, list[str]] = {}
    for v in known_server_versions():
        groups.setdefault(SERVER_RELEASES[v].alembic_head, []).append(v)
    return [g for g in groups.values() if len(g) > 1]


def share_head(from_version: str, to_version: str) -> bool:
    """True when both are known releases with the same alembic head."""
    a, b = server_release(from_version), server_release(to_version)
    return a is not None and b is not None and a.alembic_head == b.alembic_head


def describe_revision(revision: str | None, graph=None) -> str:
    """A database's alembic revision in words: ``39577145c45d (the schema of Letta 0.16.1)``.
    With ``graph`` (operations.plan.RevisionGraph) a revision between releases is placed
    between the two releases around it."""
    if revision is None:
        return "no alembic revision (not a database Letta's migrations created)"
    exact = versions_at(revision)
    if exact:
        return f"{revision} (the schema of Letta {', '.join(exact)})"
    if graph is None:
        return f"{revision} (not the schema of any Letta release)"
    if revision not in graph.parents:
        return f"{revision} (a revision the letta-{MIGRATIONS_SOURCE} migration scripts do not know)"
    before = after = None
    earlier = graph.ancestors(revision)
    for v in known_server_versions():
        head = SERVER_RELEASES[v].alembic_head
        if head in earlier:
            before = v
        elif after is None and revision in graph.ancestors(head):
            after = v
    span = " and ".join(x for x in (f"after Letta {before}" if before else None,
                                     f"before Letta {after}" if after else None) if x)
    return f"{revision} (between releases, {span}: a partly applied upgrade)"


def is_known_letta_code(version: str) -> bool:
    """True for a release in the Letta Code release table that installs."""
    return _letta_code.is_known(version)
