"""Letta Code releases published after the shipped release table, asked of the registries at
run time: PyPI's ``letta`` (from 0.32.13 on, where it is Letta Code) and npm's
``@letta-ai/letta-code`` (below that). Short timeout; answers cached for a few hours in
``<cache>/registries/``; unreachable registries leave the shipped table alone in charge, and
the refusal says so in one line.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .cache import cache_root
from .paths import write_text_atomic

PYPI_URL_ENV, NPM_URL_ENV = "LETTA_COMPAT_PYPI_URL", "LETTA_COMPAT_NPM_URL"  # mirrors (and tests)
PYPI_URL, NPM_URL = "https://pypi.org", "https://registry.npmjs.org"
PYPI_MIN = Version("0.32.13")
TIMEOUT_S = 5.0
FRESH_S = 6 * 3600  # a cached answer is asked again after this


@dataclass(frozen=True)
class Answer:
    versions: frozenset[str]  # what the registries publish (PyPI >= 0.32.13, npm below)
    offline: str | None  # why a registry could not be asked (None: both answered, now or recently)


def _get_json(url: str, accept: str = "application/json") -> dict:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "pytest-letta-compat"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (https or a mirror)
        doc = json.load(response)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _version(text: object) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _pypi(base: str) -> list[str]:
    releases = _get_json(f"{base.rstrip('/')}/pypi/letta/json").get("releases")
    if not isinstance(releases, dict):
        raise ValueError("no `releases`")
    return [v for v, files in releases.items()
            if isinstance(files, list) and any(isinstance(f, dict) and not f.get("yanked") for f in files)
            and (_version(v) or Version("0")) >= PYPI_MIN]


def _npm(base: str) -> list[str]:
    found = _get_json(f"{base.rstrip('/')}/@letta-ai%2fletta-code", "application/vnd.npm.install-v1+json")
    listed = found.get("versions")
    if not isinstance(listed, dict):
        raise ValueError("no `versions`")
    return [v for v in listed if (_version(v) or PYPI_MIN) < PYPI_MIN]


def _ask(name: str, base: str, cache_file: Path, *, refresh: bool) -> tuple[list[str] | None, str | None]:
    """(versions, None) from the registry or a fresh cached answer; (stale or None, why) when it fails."""
    key = f"{name} {base}"
    try:
        cached = json.loads(cache_file.read_text())
        cached = cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(key) if isinstance(cached.get(key), dict) else None
    if entry and not refresh and time.time() - float(entry.get("asked", 0)) < FRESH_S:
        return list(entry.get("versions", [])), None
    try:
        listed = sorted(_pypi(base) if name == "pypi" else _npm(base), key=Version)
    except (OSError, ValueError, TypeError) as exc:  # unreachable, timed out, or not a registry's answer
        why = f"{name} ({base}) did not answer: {type(exc).__name__}"
        return (list(entry.get("versions", [])) if entry else None), why
    cached[key] = {"asked": time.time(), "versions": listed}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file, json.dumps(cached, indent=1))
    except OSError:
        pass  # a read-only cache only costs the next run a question
    return listed, None


def published(cache: str | os.PathLike | None = None, *, refresh: bool = False) -> Answer:
    """What PyPI and npm publish of Letta Code (each asked at most every FRESH_S seconds)."""
    cache_file = cache_root(cache) / "registries" / "letta-code.json"
    found: set[str] = set()
    missing = []
    for name, env, default in (("pypi", PYPI_URL_ENV, PYPI_URL), ("npm", NPM_URL_ENV, NPM_URL)):
        listed, why = _ask(name, os.environ.get(env) or default, cache_file, refresh=refresh)
        found.update(listed or [])
        if why:
            missing.append(why)
    return Answer(frozenset(found), "; ".join(missing) or None)
