"""``letta-compat report merge|gate``: the compatibility grid, and the CI gate on image bumps."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import versions


def cmd_report_merge(args: argparse.Namespace) -> int:
    from ..paths import report_files
    from ..report.grid import load_report, merge_reports

    report_files(args.out, "--out")
    merged = merge_reports([load_report(p) for p in args.reports])
    for path in merged.write(Path(args.out)):
        print(f"written: {path}")
    for line in merged.terminal_lines():
        print(line)
    return 0 if merged.ok else 1


def cmd_gate(args: argparse.Namespace) -> int:
    from ..report.gate import run_gate

    return run_gate(args.compose, base_ref=args.base_ref, from_version=args.from_version, matrix=args.matrix,
                    suite=args.suite, report=args.report, pytest_args=args.pytest_args,
                    letta_code_from=args.letta_code_from, letta_code_to=args.letta_code_to)


def cmd_watch(args: argparse.Namespace) -> int:
    from ..report.watch import run_watch

    return run_watch(args.matrix, report=args.report, pytest_args=args.pytest_args)


def register(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser("watch", help="run your matrix's server against the newest Letta Code release (a "
                                         "scheduled CI job): exit 1 on a new incompatibility")
    watch.add_argument("--matrix", required=True, help="your letta-matrix.toml (its [[server]] entries)")
    watch.add_argument("--report", help="write the compatibility report here (.json/.md/.html or all three)")
    watch.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    watch.set_defaults(func=cmd_watch)

    gate = sub.add_parser("gate", help="CI gate: test the upgrade a compose file's Letta image bump would make")
    gate.add_argument("--compose", required=True, help="the compose file whose Letta image tag is checked")
    gate.add_argument("--base-ref", default="HEAD~1", help="git ref to compare with (default HEAD~1; origin/main in PRs)")
    gate.add_argument("--from", dest="from_version", type=versions.spelled, help="the version running today, when the base ref did not pin it")
    gate.add_argument("--matrix", help="take Letta Code versions and declared incompatibilities from this matrix")
    gate.add_argument("--suite", help="tests to run instead of the compatibility suite shipped with the package")
    gate.add_argument("--report", help="write the compatibility report here (.json/.md/.html or all three)")
    gate.add_argument("--letta-code-from", help="the Letta Code release used today, when the repository does not pin it")
    gate.add_argument("--letta-code-to", help="the Letta Code release to move to, when the repository does not pin it")
    gate.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    gate.set_defaults(func=cmd_gate)

    report = sub.add_parser("report", help="work with compatibility reports").add_subparsers(
        dest="report_command", required=True)
    merge = report.add_parser("merge", help="merge the JSON reports of shards into one report")
    merge.add_argument("reports", nargs="+", metavar="JSON")
    merge.add_argument("--out", required=True, help="output path (.json, .md, .html, or a bare name for all three)")
    merge.set_defaults(func=cmd_report_merge)
