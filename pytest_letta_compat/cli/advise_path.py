"""``letta-compat advise --server X [--to Y]``: the server upgrade path from the measured
server-upgrade table: its verdict, the fix-ups it needs, the hops one step at a time, what to
run first, and (``--measure``) a measurement of a path the table does not hold."""

from __future__ import annotations


from packaging.version import Version

from .. import versions
from .. import versions_upgrades as vu
from ..errors import LettaCompatError
from ..report.measure import measure_command, measured_now, run_paths


def _row_words(row: dict) -> str:
    if row["verdict"] == vu.FAILS:
        by_evidence: dict[str, list[str]] = {}
        for f in row["failing"]:  # one setup error fails every check of the path: say it once
            by_evidence.setdefault(f["evidence"][:400], []).append(f"{f['check']} ({f['outcome']})")
        failing = "; ".join(f"{evidence} [{', '.join(checks)}]" for evidence, checks in by_evidence.items())
        return f"fails: {failing or 'no check ran'}"
    if row["verdict"] == vu.WORKS_AFTER_FIXUPS:
        return f"works after fix-ups that `letta-compat upgrade` applies ({'; '.join(row['fixups'])})"
    return "works"


def _checks_words(row: dict) -> str:
    passed = [c for c, o in row["checks"].items() if o == "passed"]
    other = [f"{c} {o}" for c, o in row["checks"].items() if o not in ("passed", "skipped")]
    return f"{len(passed)} checks passed ({', '.join(passed)})" + (f", {', '.join(other)}" if other else "") \
        + f" in {row['seconds']:.0f} s"


def path_lines(old: str, new: str) -> tuple[list[str], int]:
    """What advise says of the path old -> new, and its exit code (0 works, 1 fails or not measured)."""
    table = vu.upgrade_table()
    lines = [f"Server upgrade {old} -> {new}:"]
    if versions.share_head(old, new):
        lines.append(f"  nothing to migrate: {old} and {new} share the database schema "
                     f"(alembic head {versions.server_release(new).alembic_head}); only the server program changes.")
    row = vu.measured_path(old, new)
    code = 0
    if row is None:
        lines.append(f"  not measured yet. Measure it on this machine (two real servers, about 5 minutes): "
                     f"{measure_command(old, new)}")
        code = 1
    else:
        lines.append(f"  {_row_words(row)}")
        lines.append(f"  measured {table['measured']}: {_checks_words(row)}")
        code = 1 if row["verdict"] == vu.FAILS else 0
    for release, what in vu.behaviour_changes(old, new):
        lines.append(f"  from {release}: {what}.")
    steps = vu.hops(old, new)
    if len(steps) > 1:
        said = []
        for a, b in steps:
            hop = vu.measured_path(a, b)
            said.append(f"{a} -> {b}: {hop['verdict'] if hop else 'not measured'}")
        lines.append("  one release at a time instead: " + "; ".join(said))
    lines.append("  first, rehearse it on a copy of your own database (nothing leaves this machine):")
    lines.append(f"    letta-compat rehearse --dump prod.dump --to {new}")
    lines.append(f"  then upgrade with a verified backup: letta-compat upgrade --from {old} --to {new} "
                 "--dsn \"$LETTA_PG_URI\" --url http://localhost:8283 --backup ./letta-backup  (add --apply after "
                 "reading the plan)")
    return lines, code


def check_path(old: str, new: str) -> None:
    """One line for a path that cannot be asked about."""
    if Version(new) < Version(old):
        raise LettaCompatError(f"--to {new} is older than --server {old}: Letta's migrations only go forward. "
                               "Roll back with `letta-compat rollback` and a backup instead.")
    if new == old:
        raise LettaCompatError(f"--to {new} is the release you run: there is no upgrade to advise on. "
                               f"Give a newer --to (the final release is {vu.FINAL}).")


def measure(old: str, new: str, echo=print) -> tuple[list[str], int]:
    """Measure old -> new with the installed package and say what was found."""
    echo(f"Measuring {old} -> {new}: the shipped upgrade and schema checks on real servers (a few minutes) …")
    found = measured_now(lambda report: run_paths([(old, new)], report=report, name=f"advise-{old}-to-{new}"))
    if found is None:
        raise LettaCompatError(f"measuring {old} -> {new} wrote no report: the pytest run above says why.")
    table = vu.table_from_report(found, command=measure_command(old, new), measured="now")
    row = next((r for r in table["paths"] if (r["from"], r["to"]) == (old, new)), None)
    if row is None:
        return [f"Server upgrade {old} -> {new}: no check ran (see the pytest output above)."], 1
    return [f"Server upgrade {old} -> {new}, measured now: {_row_words(row)}", f"  {_checks_words(row)}"], \
        1 if row["verdict"] == vu.FAILS else 0
