"""The gate for Letta Code bumps: which Letta Code the operator's repository pins (a package.json
dependency on @letta-ai/letta-code, or a ``letta==X`` pin >= 0.32.13 in requirements*.txt or
pyproject.toml: below that, PyPI's ``letta`` is the server), at the base ref and now; and a run
of the new Letta Code against the server version the compose file pins."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .. import versions_letta_code as lc
from ..errors import LettaCompatError
from ..matrix.writer import derived_matrix
from .git import git, repository_root
from .measure import run_suite

NPM_NAME = "@letta-ai/letta-code"
_PIN = re.compile(r"^\s*letta\s*(?:\[[^\]]*\])?\s*===?\s*([0-9][0-9A-Za-z.+-]*)\s*(?:[;#].*)?$")


@dataclass(frozen=True)
class LettaCodePin:
    version: str
    where: str  # the file (relative to the repository) that pins it


def _candidates(top: Path, ref: str | None) -> list[str]:
    listing = git(["ls-tree", "-r", "--name-only", ref] if ref else ["ls-files", "--cached", "--others",
                                                                      "--exclude-standard"], top)
    if listing.returncode != 0 and ref is None:  # not a git work tree: the files on disk, two levels deep
        listing = subprocess.CompletedProcess([], 0, "\n".join(
            p.relative_to(top).as_posix() for pattern in ("*", "*/*") for p in sorted(top.glob(pattern))
            if p.is_file()), "")
    if listing.returncode != 0:
        raise LettaCompatError(f"git could not list the files of {ref or 'the work tree'} in {top}: "
                               f"{listing.stderr.strip()}.")
    names = [n for n in listing.stdout.splitlines() if "node_modules/" not in n]
    pick = re.compile(r"(^|/)(package\.json|requirements[^/]*\.txt|pyproject\.toml)$")
    return sorted((n for n in names if pick.search(n)), key=lambda n: (n.count("/"), n))


def _read(top: Path, ref: str | None, name: str) -> str | None:
    if ref is None:
        path = top / name
        return path.read_text(errors="replace") if path.is_file() else None
    shown = git(["show", f"{ref}:{name}"], top)
    return shown.stdout if shown.returncode == 0 else None


def _exact(spec: str, where: str) -> str:
    version = spec.strip().lstrip("=v")
    try:
        Version(version)
    except InvalidVersion:
        version = ""
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise LettaCompatError(f"{where} pins Letta Code as {spec!r}: the gate needs an exact release (such as "
                               f"\"{lc.newest()}\"), or say it with --letta-code-from/--letta-code-to.")
    return version


def _pins_in(name: str, text: str) -> list[str]:
    if name.endswith("package.json"):
        try:
            doc = json.loads(text)
        except ValueError:
            return []
        found = []
        for section in ("dependencies", "devDependencies", "optionalDependencies"):
            spec = (doc.get(section) or {}).get(NPM_NAME) if isinstance(doc, dict) else None
            if isinstance(spec, str):
                found.append(_exact(spec, f"{name} ({section})"))
        return found
    # below 0.32.13, PyPI's `letta` is the server
    return [v for v in _letta_pins(name, text) if Version(v) >= lc.PYPI_MIN]


def pinned_letta_code(top: Path, ref: str | None) -> LettaCodePin | None:
    """The Letta Code the repository pins at ``ref`` (None: the work tree), or None."""
    for name in _candidates(top, ref):
        text = _read(top, ref, name)
        pins = _pins_in(name, text) if text else []
        if pins:
            return LettaCodePin(pins[0], name)
    return None


def _requirement_lines(name: str, text: str) -> list[str]:
    if name.endswith(".toml"):
        try:
            project = tomllib.loads(text).get("project") or {}
        except tomllib.TOMLDecodeError:
            return []
        lines = list(project.get("dependencies") or [])
        for extra in (project.get("optional-dependencies") or {}).values():
            lines += list(extra)
        return [str(line) for line in lines]
    return [line.split(" #")[0].strip() for line in text.splitlines()]


def _letta_pins(name: str, text: str) -> list[str]:
    """Every exact ``letta==X`` of a requirements file or pyproject.toml, server or Letta Code."""
    if name.endswith("package.json"):
        return []
    return [m.group(1) for m in map(_PIN.match, _requirement_lines(name, text)) if m]


def unbounded_letta(top: Path) -> str | None:
    """A ``letta`` requirement with no upper bound (``letta>=0.16``): the next install or bot bump
    replaces the server with Letta Code (PyPI's ``letta`` from 0.32.13 on). Where it is, or None."""
    for name in _candidates(top, None):
        if name.endswith("package.json"):
            continue
        for line in _requirement_lines(name, _read(top, None, name) or ""):
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            bounded = any(spec.operator in ("==", "===", "<", "<=", "~=") for spec in requirement.specifier)
            if requirement.name.lower() == "letta" and not bounded:
                return f"{name}: `{line}`"
    return None


def server_replaced(compose: Path, base_ref: str) -> str | None:
    """PyPI's ``letta`` is the Letta server up to 0.16.8 and Letta Code from 0.32.13 on: a pin
    that crosses that line (``letta==0.16.8`` -> ``letta==0.34.12``, a bot's usual bump) swaps
    one program for another. The sentence that says so, or None."""
    top = repository_root(compose)
    if top is None:
        return None
    for name in _candidates(top, None):
        then, now = (_letta_pins(name, _read(top, ref, name) or "") for ref in (base_ref, None))
        servers = [v for v in then if Version(v) < lc.PYPI_MIN]
        codes = [v for v in now if Version(v) >= lc.PYPI_MIN]
        if servers and codes:
            return (f"{name} moves `letta` from {servers[0]} to {codes[0]}: up to 0.16.8 PyPI's `letta` is the Letta "
                    f"server, from {lc.PYPI_MIN} on it is Letta Code, another program. This replaces the Letta "
                    "server with Letta Code. Keep the server pinned (letta==0.16.8 is its final release) and "
                    "install Letta Code beside it (npm @letta-ai/letta-code, or `letta` in its own environment).")
    return None


def letta_code_bump(compose: Path, base_ref: str, old: str | None = None,
                    new: str | None = None) -> tuple[LettaCodePin, LettaCodePin] | None:
    """(before, after) when the Letta Code pin moves between ``base_ref`` and the work tree
    (or as given by --letta-code-from/--to); None when it does not move or nothing pins it."""
    top = repository_root(compose)
    if top is None and (old is None or new is None):
        return None
    before = LettaCodePin(old, "--letta-code-from") if old else pinned_letta_code(top, base_ref)
    after = LettaCodePin(new, "--letta-code-to") if new else pinned_letta_code(top, None)
    if after is None or (before is not None and before.version == after.version):
        return None
    if not lc.is_known(after.version):
        raise LettaCompatError(f"{after.where}: {lc.refusal(after.version)}")
    return (before or LettaCodePin("none", base_ref), after)


def letta_code_matrix(server: str, letta_code: str, base_matrix: Path | None) -> str:
    """The gate's matrix for a Letta Code bump: the compose file's server × the new Letta Code."""
    return derived_matrix(f"gate-letta-code-{letta_code}-on-{server}", base_matrix, servers=[server],
                          letta_code=[letta_code])


def run_letta_code_gate(server: str, bump: tuple[LettaCodePin, LettaCodePin], *, matrix: Path | None,
                        suite: str | Path | None, report: str | None, pytest_args: list[str] | None,
                        echo=print) -> int:
    before, after = bump
    echo(f"Letta Code moves from {before.version} to {after.version} ({after.where}): running it against "
         f"Letta {server}, the version the compose file pins.")
    measured = lc.measured_pair(server, after.version)
    if measured:
        echo(f"the measured table says: {measured['outcome']}")
    returncode = run_suite(letta_code_matrix(server, after.version, matrix), name="gate", checks=("letta_code",),
                           suite=suite, report=report, pytest_args=pytest_args)
    if returncode == 0:
        echo(f"Letta Code {before.version} -> {after.version} on Letta {server}: compatible.")
        return 0
    echo(f"Letta Code {before.version} -> {after.version} on Letta {server}: NOT compatible (pytest exit "
         f"{returncode}); do not merge this bump.")
    return 1
