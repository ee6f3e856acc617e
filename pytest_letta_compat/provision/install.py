"""Install pinned Letta server versions and fetch Letta's migration scripts, on demand.

Each version gets its own venv in the cache, installed with uv and every dependency
pinned to the release date (``--exclude-newer``).  The alembic scripts are not in any
wheel: they are extracted at run time from the newest server sdist on PyPI, checked
against a known sha256, and never vendored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .. import versions
from ..cache import install_complete, install_once
from ..errors import ProvisioningError, redact
from .. import progress

PYPI_SIMPLE = os.environ.get("LETTA_COMPAT_PYPI_SIMPLE", "https://pypi.org/simple")


@dataclass(frozen=True)
class ServerInstall:
    """A ready venv holding one Letta server version."""

    version: str
    venv: Path
    installed_in: float  # seconds spent installing; 0.0 when it came from the cache

    @property
    def letta(self) -> Path:
        return self.venv / "bin" / "letta"

    @property
    def alembic(self) -> Path:
        return self.venv / "bin" / "alembic"

    @property
    def tiktoken_cache(self) -> Path | None:
        """The tiktoken encodings llama-index ships inside the install (cl100k_base and others).
        Letta 0.14-0.15 count tokens with tiktoken on an archival insert, and tiktoken downloads
        its encoding from openaipublic.blob.core.windows.net unless it finds it here: pointed at
        this, the servers never reach outside the machine for it."""
        return next(iter(sorted(self.venv.glob("lib/python3*/site-packages/llama_index/core/_static/tiktoken_cache"))),
                    None)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:  # noqa: BLE001 - fall back to PATH
        found = shutil.which("uv")
        if not found:
            raise ProvisioningError("uv is needed to install Letta servers: pip install uv.") from None
        return found


def _run(argv: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 1800) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProvisioningError(f"{what} did not finish within {timeout:.0f} s.") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ProvisioningError(f"{what} failed (exit {proc.returncode}):\n{redact(tail)}")
    return proc.stdout


# measured on the servers 0.11.3 to 0.16.8, each alone in a cache (uv shares files between installs)
INSTALL_DISK = "about 630-830 MB"


def _marker(version: str, cache: Path) -> tuple[Path, Path, str]:
    """``version``'s venv in the cache, the marker a complete install leaves, and what it must say."""
    release = versions.require_server_release(version, error=ProvisioningError)
    venv = cache / "servers" / version
    facts = {"spec": release.pip_spec, "exclude_newer": release.exclude_newer}
    if release.pins:  # (a marker without them is an install from before they were known)
        facts["pins"] = list(release.pins)
    return venv, venv / ".letta-compat-installed", json.dumps(facts)


def server_installed(version: str, cache: Path) -> bool:
    """Whether ``ensure_server`` would return at once (a marker read, no lock): what the plugin
    checks before installing ahead. An unknown version is not installed (ensure_server says why)."""
    try:
        return install_complete(*_marker(version, cache)[1:])
    except ProvisioningError:
        return False


def ensure_server(version: str, cache: Path) -> ServerInstall:
    """Return the cached venv for ``version``, installing it first if needed."""
    release = versions.require_server_release(version, error=ProvisioningError)
    venv, marker, wanted = _marker(version, cache)
    started = time.monotonic()

    def install() -> None:
        uv = uv_binary()
        with progress.phase(f"installing Letta {version} into {venv} (uv, dependencies as of "
                            f"{release.exclude_newer}; {INSTALL_DISK} of disk)", done="installed"):
            # the servers need a Python they support (3.11-3.13); the one running us will do
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                 f"Creating a venv for Letta {version}")
            _run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                  "--exclude-newer", release.exclude_newer, release.pip_spec, *release.pins],
                 f"Installing Letta server {version} ({release.pip_spec}, dependencies as of "
                 f"{release.exclude_newer})")

    # another process, or the plugin's install-ahead thread, may be installing it: install_once waits
    installed = install_once(venv, marker, wanted, install)
    return ServerInstall(version, venv, time.monotonic() - started if installed else 0.0)


def _sdist_url(version: str) -> str:
    name = f"letta-{version}.tar.gz"
    try:
        resp = httpx.get(f"{PYPI_SIMPLE}/letta/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                         timeout=60, follow_redirects=True)
        resp.raise_for_status()
        for f in resp.json()["files"]:
            if f["filename"] == name:
                return f["url"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise ProvisioningError(f"Could not read the letta file list from {PYPI_SIMPLE}: {exc}.") from None
    raise ProvisioningError(f"{PYPI_SIMPLE}/letta/ does not list {name}.")


def sdist_bytes(version: str = versions.MIGRATIONS_SOURCE) -> bytes:
    """The letta sdist of the migrations' source release from PyPI, its sha256 checked (it
    holds alembic/, and Letta's own compose.yaml and init.sql)."""
    if version != versions.MIGRATIONS_SOURCE:
        raise ProvisioningError(f"only letta-{versions.MIGRATIONS_SOURCE}.tar.gz has a known checksum here.")
    url = _sdist_url(version)
    try:
        data = httpx.get(url, timeout=300, follow_redirects=True).raise_for_status().content
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"Downloading letta-{version}.tar.gz failed: {exc}.") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != versions.MIGRATIONS_SDIST_SHA256:
        raise ProvisioningError(
            f"letta-{version}.tar.gz from {url} has sha256 {digest}, expected "
            f"{versions.MIGRATIONS_SDIST_SHA256}; refusing to run migrations from it.")
    return data


def ensure_migration_scripts(cache: Path) -> Path:
    """Directory holding ``alembic.ini`` and ``alembic/`` from the newest server sdist."""
    version = versions.MIGRATIONS_SOURCE
    target = cache / "migrations" / version
    marker = target / ".letta-compat-extracted"

    def extract() -> None:
        with progress.phase(f"downloading Letta's migration scripts (letta-{version}.tar.gz)"):
            data = sdist_bytes(version)
        prefix = f"letta-{version}/"
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.name == prefix + "alembic.ini" or m.name.startswith(prefix + "alembic/")]
            if not any(m.name == prefix + "alembic.ini" for m in members):
                raise ProvisioningError(f"letta-{version}.tar.gz has no alembic.ini; cannot migrate.")
            for m in members:
                m.name = m.name[len(prefix):]
            if any(not (m.isfile() or m.isdir()) or ".." in Path(m.name).parts for m in members):
                raise ProvisioningError(f"letta-{version}.tar.gz holds a link or a path outside alembic/; "
                                        "refusing to unpack it.")
            # only alembic.ini and alembic/: never the sdist's letta/, which would shadow the venv's.
            # Python before 3.11.4 (Debian 12's 3.11.2) has no extraction filters: the check above stands in
            tar.extractall(target, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))

    install_once(target, marker, "", extract)  # (the marker is empty, as earlier releases of this tool left it)
    return target
