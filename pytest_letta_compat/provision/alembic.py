"""Run Letta's alembic migrations against a database, as the official image does at start.

The scripts come from the newest server sdist and run inside that version's venv (its
``env.py`` imports ``letta.orm``); any older release is reached by stopping at that
release's head revision, which yields the same schema as the release's own scripts.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import versions
from .. import progress
from ..errors import LettaCompatError, ProvisioningError, redact, register_secret
from .install import ensure_migration_scripts, ensure_server


ENCRYPTION_KEY_VAR = "LETTA_ENCRYPTION_KEY"
# Letta's data-encryption backfills (8149a781ac1b: providers, sandbox environment variables,
# MCP OAuth codes; eff256d296cb: MCP servers and OAuth tokens) read LETTA_ENCRYPTION_KEY from
# alembic's environment and do nothing without it. Neither touches agent_environment_variables.
BACKFILL_REVISIONS = ("8149a781ac1b", "eff256d296cb")
_SKIPPED = "LETTA_ENCRYPTION_KEY not set. Skipping data encryption migration."
_ENCRYPTED = re.compile(r"^(\w+): Encrypted (\d+) records", re.M)


def encryption_key_from(env_name: str, option: str = "--encryption-key-env") -> str:
    """The value of the environment variable ``env_name`` (the operator's LETTA_ENCRYPTION_KEY),
    registered as a secret; unset or empty is one line naming the option."""
    value = os.environ.get(env_name)
    if not value:
        raise LettaCompatError(f"{option} {env_name}: that environment variable is not set (or empty). Export "
                               "the server's LETTA_ENCRYPTION_KEY under it.")
    register_secret(value)
    return value


def alembic_env(dsn: str, home: Path, encryption_key: str | None = None) -> dict[str, str]:
    # LETTA_PG_URI must be set: the ORM picks column types from it at import time
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LETTA_PG_URI": dsn,
           "PYTHONUNBUFFERED": "1", "LC_ALL": "C.UTF-8"}
    if encryption_key:  # in the environment only: never on a command line, never printed
        env[ENCRYPTION_KEY_VAR] = encryption_key
    return env


def backfill_notes(output: str) -> list[str]:
    """What Letta's data-encryption backfills did, from alembic's output (counts, no values)."""
    notes = []
    if _SKIPPED in output:
        notes.append(f"Letta's data-encryption migrations ({', '.join(BACKFILL_REVISIONS)}) were skipped: "
                     f"{ENCRYPTION_KEY_VAR} was not set for alembic")
    notes += [f"{table}: {count} record(s) encrypted by Letta's data-encryption migration"
              for table, count in _ENCRYPTED.findall(output) if count != "0"]
    return notes


def _where(dsn: str) -> str:
    """``database db at host:port``, without user or password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(dsn)
        return f"database {parts.path.lstrip('/') or '?'} at {parts.hostname}:{parts.port}"
    except ValueError:
        return "the database"


def upgrade_database(dsn: str, revision: str, cache: Path, *, log_path: Path | None = None,
                     timeout: float = 900, encryption_key: str | None = None) -> float:
    """``alembic upgrade <revision>`` on ``dsn``; returns the seconds it took. ``encryption_key``
    (the server's LETTA_ENCRYPTION_KEY) lets Letta's data-encryption backfills run."""
    register_secret(encryption_key)
    scripts = ensure_migration_scripts(cache)
    migrator = ensure_server(versions.MIGRATIONS_SOURCE, cache)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="letta-compat-alembic-") as home, \
            progress.phase(f"alembic upgrade {revision} on {redact(_where(dsn))}"):
        try:
            proc = subprocess.run([str(migrator.alembic), "upgrade", revision], cwd=scripts,
                                  env=alembic_env(dsn, Path(home), encryption_key), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ProvisioningError(f"alembic upgrade {revision} did not finish within {timeout:.0f} s.") from None
        if proc.returncode != 0:
            progress.emit(f"alembic upgrade {revision} exited with code {proc.returncode}")
    output = redact(proc.stdout + proc.stderr)
    if log_path is not None:  # a backend's work directory may not exist yet (a template built on a cold cache)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ alembic upgrade {revision}\n{output}\n")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise ProvisioningError(f"alembic upgrade {revision} failed (exit {proc.returncode}):\n{tail}")
    return time.monotonic() - started


def upgrade_to_release(dsn: str, version: str, cache: Path, **kwargs) -> float:
    release = versions.require_server_release(version, error=ProvisioningError)
    return upgrade_database(dsn, release.alembic_head, cache, **kwargs)


@dataclass(frozen=True)
class RevisionGraph:
    """Alembic revisions and their parents (``down_revision``)."""

    parents: dict[str, tuple[str, ...]]

    @classmethod
    def from_scripts(cls, scripts_dir: Path) -> "RevisionGraph":
        parents: dict[str, tuple[str, ...]] = {}
        for script in sorted((Path(scripts_dir) / "alembic" / "versions").glob("*.py")):
            found = _module_strings(script, ("revision", "down_revision"))
            if "revision" in found:
                parents[found["revision"][0]] = found.get("down_revision", ())
        if not parents:
            raise LettaCompatError(f"No alembic revisions found under {scripts_dir}/alembic/versions; "
                                   "the migration scripts are incomplete (delete that directory to fetch them again).")
        return cls(parents)

    def ancestors(self, revision: str) -> set[str]:
        """``revision`` and every revision before it."""
        seen, todo = set(), [revision]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.parents.get(current, ()))
        return seen

    def steps(self, start: str, target: str) -> list[str]:
        """Revisions applied going from ``start`` to ``target``, in order."""
        return sorted(self.ancestors(target) - self.ancestors(start), key=lambda r: len(self.ancestors(r)))


def _module_strings(path: Path, names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Module-level ``name = "x"`` / ``name: T = ("x", "y")`` assignments, read without importing."""
    found: dict[str, tuple[str, ...]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target in names and value is not None:
            literal = ast.literal_eval(value)
            found[target] = () if literal is None else (literal,) if isinstance(literal, str) else tuple(literal)
    return found
