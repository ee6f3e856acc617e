"""The schema a Letta server version expects: its own ORM metadata plus its alembic head.

The ORM is dumped by ``dump_orm_schema.py`` running inside that version's installed venv
(nothing from Letta is copied here); the dump is cached per version and per dump script.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import versions
from ..cache import locked
from ..errors import ProvisioningError, redact
from ..paths import atomic_path
from ..provision.install import ensure_server

DUMP_SCRIPT = Path(__file__).with_name("dump_orm_schema.py")
# the ORM picks PostgreSQL column types when LETTA_PG_URI is set; nothing connects to it
_PLACEHOLDER_URI = "postgresql://letta:unused@127.0.0.1:1/letta"


@dataclass(frozen=True)
class ExpectedSchema:
    version: str
    revision: str  # the version's alembic head
    tables: dict[str, dict]  # as written by dump_orm_schema.py


def expected_schema(version: str, cache: Path) -> ExpectedSchema:
    release = versions.require_server_release(version)
    return ExpectedSchema(version, release.alembic_head, _orm_dump(version, cache)["tables"])


def _orm_dump(version: str, cache: Path) -> dict:
    script = DUMP_SCRIPT.read_text(encoding="utf-8")
    digest = hashlib.sha256(script.encode()).hexdigest()[:12]
    target = cache / "schemas" / f"{version}-orm-{digest}.json"
    if target.exists():
        return json.loads(target.read_text(encoding="utf-8"))
    install = ensure_server(version, cache)
    with locked(target):
        if not target.exists():
            _run_dump(install.python, script, target)
    return json.loads(target.read_text(encoding="utf-8"))


def _run_dump(python: Path, script: str, target: Path) -> None:
    with atomic_path(target) as partial, tempfile.TemporaryDirectory(prefix="letta-compat-orm-") as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C.UTF-8",
               "LETTA_PG_URI": _PLACEHOLDER_URI}
        try:
            # -I -c: run from source, so nothing next to the script can shadow a stdlib module
            proc = subprocess.run([str(python), "-I", "-c", script, str(partial)], cwd=home, env=env,
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise ProvisioningError(f"Reading the ORM schema with {python} took longer than 300 s.") from None
        if proc.returncode != 0:
            tail = "\n".join(redact(proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise ProvisioningError(f"Reading the ORM schema with {python} failed (exit {proc.returncode}):\n{tail}")
