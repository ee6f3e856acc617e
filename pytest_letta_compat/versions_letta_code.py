"""The Letta Code release table (shipped data, refreshed by scripts/refresh_letta_code_releases.py)
and the measured server × Letta Code compatibility table (data/letta_code_compat.json).

Only a version in the release table that installs is accepted anywhere a Letta Code version
is named: an exact release, never a range, a tag or a guess such as ``99.0.0``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from packaging.version import InvalidVersion, Version

PYPI_MIN = Version("0.32.13")  # from here on, PyPI's ``letta`` is Letta Code (with its own Node)
WARNS_BELOW_SERVER = Version("0.16.6")  # Letta Code >= 0.18 warns at startup on older servers


@dataclass(frozen=True)
class LettaCodeRelease:
    version: str
    source: str  # "npm" or "pypi"
    released: str  # YYYY-MM-DD (UTC)
    date_source: str
    installs: bool
    why_not: str | None = None

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def _data(name: str) -> Any:
    return json.loads(resources.files("pytest_letta_compat").joinpath("data", name).read_text())


@lru_cache(maxsize=1)
def release_table() -> dict[str, Any]:
    return _data("letta_code_releases.json")


@lru_cache(maxsize=1)
def releases() -> tuple[LettaCodeRelease, ...]:
    rows = release_table()["releases"]
    return tuple(LettaCodeRelease(r["version"], r["source"], r["released"], r["date_source"], r["installs"],
                                  r.get("why_not")) for r in sorted(rows, key=lambda r: Version(r["version"])))


def installable() -> list[str]:
    return [r.version for r in releases() if r.installs]


def release(version: str) -> LettaCodeRelease | None:
    return next((r for r in releases() if r.version == version), None)


def is_known(version: object) -> bool:
    """A release of the table that installs, or one published after the table (PyPI or npm has it)."""
    found = release(version) if isinstance(version, str) else None
    if found is not None:
        return found.installs
    return published_after_table(version)


_EXACT = re.compile(r"\d+\.\d+\.\d+")
_asked: list = []  # the registries' answer, asked once per process


def registry_answer():
    """What PyPI and npm publish (letta_code_registry.Answer), asked once per process."""
    if not _asked:
        from .letta_code_registry import published

        _asked.append(published())
    return _asked[0]


def published_after_table(version: object) -> bool:
    """True for an exact release the table does not list and a registry publishes."""
    if not isinstance(version, str) or not _EXACT.fullmatch(version) or release(version) is not None:
        return False
    return version in registry_answer().versions


def refusal(version: object) -> str:
    """Why ``version`` is not accepted, naming what is: one sentence for every refusal."""
    found = release(version) if isinstance(version, str) else None
    if found is not None:
        return (f"Letta Code {version} ({found.source}) is in the release table but does not install: "
                f"{found.why_not}. Allowed: {describe_allowed()}.")
    return f"Letta Code {version!r} is neither in the release table nor published on PyPI or npm. " \
           f"Allowed: {describe_allowed()}."


def newest() -> str:
    return installable()[-1]


def last_of_each_minor(since: str = "0.15") -> list[str]:
    """The last installable release of every minor line from ``since`` on."""
    last: dict[str, str] = {}
    for r in releases():
        if r.installs and Version(r.version) >= Version(since):
            last[r.minor] = r.version
    return sorted(last.values(), key=Version)


def describe_allowed() -> str:
    """The accepted versions in one line, for error messages."""
    npm = [r.version for r in releases() if r.installs and r.source == "npm"]
    pypi = [r.version for r in releases() if r.installs and r.source == "pypi"]
    answer = registry_answer()
    newer = sorted((v for v in answer.versions if release(v) is None and Version(v) > Version(newest())), key=Version)
    registries = (f"; the registries could not be asked ({answer.offline}), so only the table counts"
                  if answer.offline and not answer.versions else
                  f", or a release PyPI or npm published after it ({', '.join(newer[-3:])})" if newer else
                  ", or a newer release once PyPI or npm publishes one")
    return (f"a Letta Code release that installs: {', '.join(npm)} (npm), {', '.join(pypi)} (PyPI) "
            f"(table of {release_table()['refreshed']}; `letta-compat versions --letta-code` lists them)"
            + registries)


def version_key(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


# -- the measured table -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def compat_table() -> dict[str, Any] | None:
    try:
        return _data("letta_code_compat.json")
    except FileNotFoundError:
        return None


CHECK_NAMES = {  # suite test -> the check's name in the table
    "test_headless_turn_completes_through_the_server_and_the_fake_llm": "headless turn",
    "test_agent_it_created_is_visible_over_rest_with_its_messages": "agent over REST",
    "test_second_run_in_the_same_directory_resumes_the_agent_and_conversation": "resume in directory",
    "test_conversation_resumes_by_id": "resume by id",
    "test_tool_call_round_trip_through_letta_code": "tool round trip",
    "test_history_listed_by_letta_code_after_a_server_restart": "history after restart",
    "test_startup_warning_on_old_servers_is_recorded": "startup warning",
}
WORKS, WARNS, FAILS = "works", "works with a warning", "fails"


def failure_evidence(message: str) -> str:
    """The line of a failed check's report that says why: its first ``E`` line, else its last line."""
    message = (message or "").strip()
    evidence = next((line.strip() for line in message.splitlines() if line.strip().startswith("E ")), "")
    return (evidence or (message.splitlines()[-1] if message else ""))[:600]


def compat_from_report(report: dict[str, Any], *, command: str, measured: str, note: str = "") -> dict[str, Any]:
    """The measured table from a (merged) compatibility report's JSON."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for t in report.get("tests", []):
        row, column = t["row"], t["column"]
        if not (row.startswith("server-") and column.startswith("letta-code-")):
            continue
        server, letta_code = row.removeprefix("server-"), column.removeprefix("letta-code-")
        pair = pairs.setdefault((server, letta_code), {"server": server, "letta_code": letta_code, "checks": {},
                                                       "failing": [], "warning": None, "seconds": 0.0})
        test = t["nodeid"].split("::")[-1].split("[")[0]
        check = CHECK_NAMES.get(test, test)
        pair["checks"][check] = t["outcome"]
        pair["seconds"] = round(pair["seconds"] + float(t.get("duration") or 0.0), 1)
        message = (t.get("message") or "").strip()
        if t["outcome"] in ("failed", "error", "xfailed", "xpassed"):
            pair["failing"].append({"check": check, "outcome": t["outcome"], "evidence": failure_evidence(message)})
        elif t["outcome"] == "passed" and message.startswith(WARNS):
            pair["warning"] = message.removeprefix(WARNS + ":").strip()[:300]
    for pair in pairs.values():
        pair["outcome"] = FAILS if pair["failing"] else WARNS if pair["warning"] else WORKS
    rows = sorted(pairs.values(), key=lambda p: (Version(p["letta_code"]), Version(p["server"])))
    return {"measured": measured, "command": command, "note": note, "floor_server": "0.11.3",
            "servers": sorted({p["server"] for p in rows}, key=Version),
            "letta_code": sorted({p["letta_code"] for p in rows}, key=Version), "pairs": rows}


def measured_pair(server: str, letta_code: str) -> dict[str, Any] | None:
    table = compat_table() or {}
    return next((p for p in table.get("pairs", []) if p["server"] == server and p["letta_code"] == letta_code), None)
