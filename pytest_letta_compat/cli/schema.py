"""``letta-compat schema ...`` subcommands."""

from __future__ import annotations

import argparse
import json

from ..cache import cache_root
from ..schema.compare import DriftReport, check_database
from ..postgres.client import shown_dsn
from .operations import dsn_argument
from .. import versions


def cmd_schema_check(args: argparse.Namespace) -> int:
    report = check_database(args.dsn, args.server_version, cache_root(args.cache_dir))
    if args.json:
        print(json.dumps({"dsn": shown_dsn(args.dsn), **report.to_dict()}, indent=2))
    else:
        print_report(report, shown_dsn(args.dsn), verbose=args.verbose)
    return 0 if report.ready else 1


def print_report(report: DriftReport, where: str, *, verbose: bool = False) -> None:
    version, schema = report.server_version, report.schema or "no Letta schema"
    if report.ready:
        print(f"{where} (schema {schema}) is ready for Letta {version}: alembic revision "
              f"{report.revision_found}, {report.tables_checked} tables match its models.")
    else:
        print(f"{where} (schema {schema}) is NOT ready for Letta {version}: "
              f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}")
        for finding in report.problems:
            print(f"  {finding}")
        if report.revision_found != report.revision_expected:
            print(f"Migrate first: alembic upgrade {report.revision_expected} with Letta {version}'s "
                  "migration scripts (what the official image's startup does), then check again.")
    if report.notes and verbose:
        print("Notes (differences that do not break Letta):")
        for finding in report.notes:
            print(f"  {finding}")
    elif report.notes:
        print(f"{len(report.notes)} note{'s' if len(report.notes) != 1 else ''} on differences that do not "
              "break Letta (--verbose lists them).")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the schema subcommands to the ``letta-compat`` parser."""
    schema = sub.add_parser("schema", help="check a Letta database's schema").add_subparsers(
        dest="schema_command", required=True, metavar="COMMAND")
    check = schema.add_parser(
        "check", help="is this database ready for a Letta server version? (exit 0 ready, 1 problems, 2 bad input)",
        description="Compare a live database with the schema Letta VERSION's own models expect and with its "
                    "alembic head. Exit 0: ready. Exit 1: each problem is printed as `table.column: what is "
                    "wrong`. Exit 2: bad input (cannot connect, unknown version).")
    dsn_argument(check, help="postgresql://USER:PASSWORD@HOST:PORT/DB (default $LETTA_PG_URI, which keeps the "
                            "password off the command line; Letta's +pg8000/+asyncpg spellings work too; "
                            "the password is never printed)")
    check.add_argument("--server-version", required=True, metavar="VERSION", type=versions.spelled,
                       help="the Letta server version to judge the database for, e.g. 0.16.2")
    check.add_argument("--json", action="store_true", help="print the structured report as JSON")
    check.add_argument("--verbose", "-v", action="store_true", help="also list the notes (harmless differences)")
    check.set_defaults(func=cmd_schema_check)
