#!/usr/bin/env python3
"""Measure the server-upgrade table (every release -> the final one, every release -> the next
release whose alembic head differs) and write it to pytest_letta_compat/data/server_upgrade_table.json.

Spread over N runners or cores, then merged and recorded:

    .venv/bin/python scripts/measure_server_upgrades.py run --shard K/N --report shard-K.json   # one per runner
    .venv/bin/python scripts/measure_server_upgrades.py record shard-*.json --command "<how the shards ran>"

A path measured again (`run --only OLD:NEW`, after a fix) replaces its earlier rows: give
`record` the reports in the order they were made (`record shard-1.json shard-2.json again.json`).
`letta-compat report merge shard-*.json --out merged` shows the same runs as one grid.

`paths` lists what is measured. This script is the only writer of the shipped table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_letta_compat.report.measure import run_paths  # noqa: E402
from pytest_letta_compat.versions_upgrades import table_from_report, table_paths  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "pytest_letta_compat" / "data" / "server_upgrade_table.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("paths", help="list the paths the table measures")
    run = sub.add_parser("run", help="measure the paths (a shard of them with --shard K/N)")
    run.add_argument("--shard", help="K/N: this runner's share of the paths")
    run.add_argument("--report", required=True, help="where pytest writes this shard's JSON report")
    run.add_argument("--only", action="append", metavar="OLD:NEW", default=[],
                     help="measure just this path of the table (repeatable), e.g. to measure again after a fix")
    run.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    rec = sub.add_parser("record", help="write the shipped table from the reports (later ones replace the rows "
                                        "of the paths they measured again)")
    rec.add_argument("reports", type=Path, nargs="+")
    rec.add_argument("--command", required=True, help="the command(s) that produced the report")
    rec.add_argument("--note", default="", help="what was and was not measured, and on what machine")
    rec.add_argument("--measured", default=dt.datetime.now(dt.timezone.utc).date().isoformat())
    rec.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.what == "paths":
        for old, new in table_paths():
            print(f"{old} -> {new}")
        return 0
    if args.what == "run":
        paths = table_paths()
        only = [tuple(p.split(":", 1)) for p in args.only]
        unknown = [f"{a}:{b}" for a, b in only if (a, b) not in paths]
        if unknown:
            ap.error(f"--only {', '.join(unknown)}: not a path of the table (`paths` lists them)")
        return run_paths([p for p in paths if not only or p in only], shard=args.shard, report=args.report,
                         pytest_args=args.pytest_args)
    tests: list[dict] = []
    for report in args.reports:
        again = json.loads(report.read_text())["tests"]
        rows = {t["row"] for t in again}
        tests = [t for t in tests if t["row"] not in rows] + again
    table = table_from_report({"tests": tests}, command=args.command, measured=args.measured, note=args.note)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    for row in table["paths"]:
        fixups = f" ({'; '.join(row['fixups'])})" if row["fixups"] else ""
        print(f"{row['from']:>7} -> {row['to']:<7} {row['verdict']}{fixups}, {row['seconds']} s")
    print(f"wrote {len(table['paths'])} paths ({table['seconds']} s of checks) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
