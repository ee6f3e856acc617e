"""The measured server-upgrade table (shipped data, data/server_upgrade_table.json, written
only by scripts/measure_server_upgrades.py): for every Letta release, the path to the final
release and the hop to the next release whose alembic head differs, each with a verdict, the
checks that ran, the fix-ups it needed, its seconds, and the date and command of the measurement.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from packaging.version import Version

from . import versions
from .versions_letta_code import failure_evidence

FINAL = "0.16.8"  # the server repository was archived in August 2026; this is its last release
# what a row of the table runs: the path through the CLI (backup gate, --apply, fix-ups,
# verify), the recreate strategy, the fix-up checks, and the schema against a fresh database
MEASURE_CHECKS = ("upgrade", "schema")
WORKS, WORKS_AFTER_FIXUPS, FAILS = "works", "works after fix-ups", "fails"
FIXUP_NOTE = "fix-ups repaired: "  # a passing CLI path's note in the compatibility report

# What a release changes that no migration or fix-up can carry across: (release, what an operator must
# do before upgrading to it or past it). advise names each one a path crosses.
BEHAVIOUR_CHANGES = (
    ("0.16.7", "Letta refuses every MCP server at a private address (127.0.0.1, localhost, 10.x, 192.168.x, "
               "a .local name, a name resolving to one): listing MCP servers answers 400 and their tools stop "
               "running, with no setting to turn it off (letta a882310e0). Give such MCP servers a public "
               "address first, or stay on 0.16.6"),
)


def behaviour_changes(old: str, new: str) -> list[tuple[str, str]]:
    """The BEHAVIOUR_CHANGES a path old -> new crosses (old before the release, new at or after it)."""
    return [(release, what) for release, what in BEHAVIOUR_CHANGES if Version(old) < Version(release) <= Version(new)]


CHECK_NAMES = {  # suite test -> the check's name in the table
    "test_in_place_upgrade_through_the_cli": "upgrade through the CLI",
    "test_recreate_strategy_carries_every_agent": "recreate strategy",
    "test_refuses_to_upgrade_without_a_backup": "backup gate",
    "test_run_history_survives_the_upgrade": "run history",
    "test_archival_memory_uses_the_agents_own_embedding_after_the_upgrade": "archival memory",
    "test_tool_calls_waiting_for_approval_are_answered_after_the_upgrade": "approvals pending",
    "test_mcp_servers_list_their_tools_after_the_upgrade": "MCP server tools",
    "test_sequence_fixups_let_messages_through_again": "sequence fix-ups",
    "test_fixup_normalises_the_incidents_hand_made_sequence": "incident's sequence",
    "test_upgraded_database_is_identical_to_a_fresh_one": "schema as fresh",
}


def next_head(version: str) -> str | None:
    """The next release after ``version`` whose alembic head differs (None: none is left)."""
    head = versions.require_server_release(version).alembic_head
    later = [v for v in versions.known_server_versions() if Version(v) > Version(version)]
    return next((v for v in later if versions.server_release(v).alembic_head != head), None)


def table_paths() -> list[tuple[str, str]]:
    """What the table measures: every release -> FINAL, and every release -> its next head."""
    paths: list[tuple[str, str]] = []
    for v in versions.known_server_versions():
        for target in (FINAL, next_head(v)):
            if target is not None and Version(target) > Version(v) and (v, target) not in paths:
                paths.append((v, target))
    return paths


def table_from_report(report: dict[str, Any], *, command: str, measured: str, note: str = "") -> dict[str, Any]:
    """The measured table from a (merged) compatibility report's JSON."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for t in report.get("tests", []):
        row = t["row"]
        if not row.startswith("upgrade-") or "-to-" not in row:
            continue
        old, new = row.removeprefix("upgrade-").split("-to-", 1)
        test = t["nodeid"].split("::")[-1].split("[")[0]
        if test not in CHECK_NAMES:
            continue
        entry = rows.setdefault((old, new), {"from": old, "to": new, "checks": {}, "fixups": [], "failing": [],
                                             "seconds": 0.0})
        entry["checks"][CHECK_NAMES[test]] = t["outcome"]
        entry["seconds"] = round(entry["seconds"] + float(t.get("duration") or 0.0), 1)
        message = (t.get("message") or "").strip()
        if t["outcome"] in ("failed", "error", "xfailed", "xpassed"):
            entry["failing"].append({"check": CHECK_NAMES[test], "outcome": t["outcome"],
                                     "evidence": failure_evidence(message)})
        elif t["outcome"] == "passed" and message.startswith(FIXUP_NOTE):
            entry["fixups"] = sorted(f.strip() for f in message.removeprefix(FIXUP_NOTE).split(";") if f.strip())
    for entry in rows.values():
        ran = [o for o in entry["checks"].values() if o != "skipped"]
        entry["verdict"] = FAILS if entry["failing"] or not ran else WORKS_AFTER_FIXUPS if entry["fixups"] else WORKS
    ordered = sorted(rows.values(), key=lambda r: (Version(r["from"]), Version(r["to"])))
    return {"measured": measured, "command": command, "note": note, "final": FINAL,
            "seconds": round(sum(r["seconds"] for r in ordered), 1), "paths": ordered}


@lru_cache(maxsize=1)
def upgrade_table() -> dict[str, Any]:
    """The shipped table ({"paths": []} before its first measurement)."""
    source = resources.files("pytest_letta_compat").joinpath("data", "server_upgrade_table.json")
    return json.loads(source.read_text()) if source.is_file() else {"paths": []}


def measured_path(old: str, new: str) -> dict[str, Any] | None:
    return next((p for p in upgrade_table()["paths"] if p["from"] == old and p["to"] == new), None)


def hops(old: str, new: str) -> list[tuple[str, str]]:
    """One step at a time from ``old`` to ``new``: each hop to the next release whose head differs."""
    steps, here = [], old
    while Version(here) < Version(new):
        nxt = next_head(here)
        if nxt is None or Version(nxt) > Version(new):
            if here != new:
                steps.append((here, new))
            break
        steps.append((here, nxt))
        here = nxt
    return steps
