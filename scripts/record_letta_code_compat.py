#!/usr/bin/env python3
"""Turn the merged report of matrices/letta-code-table.toml into the shipped measured table,
pytest_letta_compat/data/letta_code_compat.json (with the date and the command that produced it).

    letta-compat report merge shard-*.json --out merged.json
    .venv/bin/python scripts/record_letta_code_compat.py merged.json --command "<how the shards ran>" [--note "..."]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_letta_compat.versions_letta_code import compat_from_report  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "pytest_letta_compat" / "data" / "letta_code_compat.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="the merged compatibility report (JSON)")
    ap.add_argument("--command", required=True, help="the command(s) that produced the report")
    ap.add_argument("--note", default="", help="what was and was not measured")
    ap.add_argument("--measured", default=dt.datetime.now(dt.timezone.utc).date().isoformat())
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    table = compat_from_report(json.loads(args.report.read_text()), command=args.command, measured=args.measured,
                               note=args.note)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    for p in table["pairs"]:
        print(f"Letta Code {p['letta_code']:<8} on {p['server']}: {p['outcome']} ({p['seconds']} s)")
    print(f"wrote {len(table['pairs'])} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
