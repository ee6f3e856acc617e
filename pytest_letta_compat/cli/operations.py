"""``letta-compat backup|restore|verify|upgrade|rollback|convert`` subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import LettaCompatError
from .. import versions


def encryption_key_option(args: argparse.Namespace) -> str | None:
    """The key ``--encryption-key-env NAME`` names (a registered secret), or None without the option;
    an unset or empty variable is one line naming the option, before anything runs."""
    from ..provision.alembic import encryption_key_from

    return encryption_key_from(args.encryption_key_env) if args.encryption_key_env is not None else None


def _server_args(p: argparse.ArgumentParser, *, or_compose: bool = False) -> None:
    """``--url`` (required, unless the command also takes ``--compose``) and ``--api-key``."""
    p.add_argument("--url", required=not or_compose, default=None,
                   help="the Letta server, e.g. http://localhost:8283" + (" (or --compose)" if or_compose else ""))
    p.add_argument("--api-key", default=None,
                   help="the server password (default $LETTA_API_KEY; never printed)")


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get("LETTA_API_KEY") or None


def cmd_backup(args: argparse.Namespace) -> int:
    from ..operations.backup import backup

    if bool(args.url) == bool(args.compose):
        raise LettaCompatError("backup reads one server: give --url URL (and --dsn for the pg_dump) or --compose FILE.")
    if args.compose:
        from ..operations.compose_commands import stack_endpoints

        with stack_endpoints(args.compose, args.service) as (url, password, dsn):
            manifest = backup(url, Path(args.out), api_key=password, dsn=dsn)
    else:
        dsn = args.dsn or os.environ.get("LETTA_PG_URI") or None
        manifest = backup(args.url, Path(args.out), api_key=_api_key(args), dsn=dsn)
    print(f"backup of {len(manifest.agents)} agents written to {args.out} and read back: complete")
    return 0


def compose_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--compose FILE`` and ``--service NAME``: a compose stack's server (and database) found as
    ``upgrade --compose`` finds them."""
    p.add_argument("--compose", metavar="FILE", default=None,
                   help=f"your docker-compose.yml: {what} found in the running stack (its published port; the "
                        "database through its port or a relay on the stack's network)")
    p.add_argument("--service", default=None, help="with --compose: the Letta service, when its image is not "
                                                   "letta/letta")


def cmd_restore(args: argparse.Namespace) -> int:
    from ..operations.restore import restore

    report = restore(args.url, Path(args.backup), api_key=_api_key(args))
    if report.ok:
        print(f"all {len(report.outcomes)} agents are on Letta {report.target_version} at {report.target_url}")
        return 0
    print(f"{len(report.failed)} of {len(report.outcomes)} agents were NOT restored:", file=sys.stderr)
    for outcome in report.failed:
        print(f"  {outcome.name!r} ({outcome.source_id}): {outcome.reason}", file=sys.stderr)
    print("fix the cause and run the same restore again: it only restores what is missing", file=sys.stderr)
    return 1


def cmd_verify(args: argparse.Namespace) -> int:
    from ..operations.verify import verify

    report = verify(args.url, Path(args.backup), api_key=_api_key(args))
    print(report.format_table())
    return 0 if report.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    from ..operations.agentfile import AgentFileError, check_history, convert_legacy
    from ..paths import output_file

    output = output_file(args.output, "OUT", "Give a path for the new agent file in a writable directory.")

    def load(path: str):
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise LettaCompatError(f"Cannot read {path}: {exc.strerror or type(exc).__name__}.") from None
        except ValueError as exc:  # the position only: the text of the file may hold secrets
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise LettaCompatError(f"{path} is not JSON{where}: give an agent export (.json/.af).") from None

    try:
        history = check_history(load(args.history), f"--history {args.history}") if args.history else None
        converted = convert_legacy(load(args.input), history)
    except AgentFileError as exc:
        raise LettaCompatError(f"{args.input} cannot be converted: {exc}") from None
    try:
        output.write_text(json.dumps(converted, indent=1, ensure_ascii=False), encoding="utf-8")
    except OSError as exc:
        raise LettaCompatError(f"OUT {output}: cannot be written ({exc.strerror or type(exc).__name__}).") from None
    agent = converted["agents"][0]
    print(f"{args.output}: agent file of {agent['name']!r} with {len(agent['messages'])} messages, "
          f"{len(converted['blocks'])} blocks, {len(converted['tools'])} tools")
    return 0


def _register_backup(sub) -> None:
    p = sub.add_parser("backup", help="back up every agent (export + full history), optionally pg_dump")
    _server_args(p, or_compose=True)
    compose_arguments(p, "the server, its password and its database are")
    p.add_argument("--out", required=True, help="a new directory for the backup")
    p.add_argument("--dsn", help="the server's database DSN: adds a pg_dump archive and the alembic revision "
                                 "(default $LETTA_PG_URI; the password goes to pg_dump via PGPASSWORD only)")
    p.set_defaults(func=cmd_backup)


def _register_restore(sub) -> None:
    p = sub.add_parser("restore", help="import every agent of a backup (resumable, never duplicates)")
    _server_args(p)
    p.add_argument("backup", metavar="DIR")
    p.set_defaults(func=cmd_restore)


def _register_verify(sub) -> None:
    p = sub.add_parser("verify", help="check every agent of a backup is on a server, whole; exit 1 if not")
    _server_args(p)
    p.add_argument("backup", metavar="DIR")
    p.set_defaults(func=cmd_verify)


def _register_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a 0.11.x agent export into the agent file 0.12+ imports")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--history", help="the agent's full message history (history.json of a backup)")
    p.set_defaults(func=cmd_convert)


DSN_MISSING = ("Letta's database is not given: set $LETTA_PG_URI (it keeps the password off the command line) "
               "or pass --dsn postgresql://USER:PASSWORD@HOST:5432/DB. The host must be reachable from where "
               "letta-compat runs (for a compose stack: the published port on localhost, not the service name).")


def dsn_argument(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--dsn``, defaulting to $LETTA_PG_URI; main() says DSN_MISSING when neither is there."""
    p.add_argument("--dsn", default=os.environ.get("LETTA_PG_URI"),
                   help=help or "Letta's database, postgresql://USER:PASSWORD@HOST:5432/DB (default $LETTA_PG_URI, "
                                "which keeps the password off the command line; never printed)")
    p.set_defaults(needs_dsn=True)


def cmd_upgrade_compose(args: argparse.Namespace) -> int:
    from ..cache import cache_root
    from ..errors import redact
    from ..operations.compose_commands import ComposeStackError
    from ..operations.compose_upgrade import ComposeUpgrade, ComposeUpgradeRequest, RehearsalNotIntact

    given = [flag for flag, value in (("--from", args.from_version), ("--url", args.url),
                                      ("--strategy", args.strategy != "in-place")) if value]
    if given:
        raise LettaCompatError(f"--compose reads the release, the server and the database from the stack; leave out "
                               f"{', '.join(given)}.")
    upgrade = ComposeUpgrade(ComposeUpgradeRequest(Path(args.compose), args.to_version, Path(args.backup),
                                                   cache_root(args.cache_dir), service=args.service,
                                                   rehearse=args.rehearse),
                             progress=lambda line: print(redact(line), flush=True))
    if not args.apply:
        try:
            print(upgrade.plan())
        except RehearsalNotIntact as exc:  # a check found problems: exit 1, as `rehearse` does
            print(f"letta-compat: error: {exc}", file=sys.stderr)
            return 1
        print("Dry run: nothing was changed. Add --apply to carry it out.")
        return 0
    try:
        print(upgrade.apply())
    except ComposeStackError as exc:  # the stack is back on the old release, or the message says what to do
        print(f"letta-compat: error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from ..cache import cache_root
    from ..errors import redact
    from ..operations.upgrade import UpgradeRequest, apply_upgrade, assess, format_plan

    if args.compose:
        return cmd_upgrade_compose(args)
    if args.rehearse:
        raise LettaCompatError("--rehearse goes with --compose; without it, rehearse first: letta-compat rehearse "
                               "--dump FILE --to VERSION (see docs/rehearse.md).")
    missing = [flag for flag, value in (("--from", args.from_version), ("--url", args.url)) if not value]
    if missing:
        raise LettaCompatError(f"upgrade needs {' and '.join(missing)} (the release and the server running now), "
                               "or --compose FILE to read both from your compose stack.")
    if not args.dsn:
        raise LettaCompatError(DSN_MISSING)
    request = UpgradeRequest(args.from_version, args.to_version, args.dsn, args.url, Path(args.backup),
                             cache_root(args.cache_dir), api_key=_api_key(args), strategy=args.strategy,
                             encryption_key=encryption_key_option(args),
                             encryption_key_source=f"${args.encryption_key_env}" if args.encryption_key_env else "")
    if not args.apply:
        print(format_plan(assess(request)))
        print("Dry run: nothing was changed. Add --apply to carry out the steps up to the switch "
              "(the old server must be stopped for the migration).")
        return 0
    outcome = apply_upgrade(request, progress=lambda line: print(redact(line), flush=True))
    print(f"The database is at {outcome.revision} (Letta {args.to_version}). Now:")
    for number, step in enumerate(outcome.next_steps, 1):
        print(f"  {number}. {step}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ..cache import cache_root
    from ..errors import redact
    from ..operations.rollback import rollback

    report = rollback(args.dsn, Path(args.backup), cache=cache_root(args.cache_dir),
                      progress=lambda line: print(redact(line), flush=True))
    print(f"The {report.database} is back at alembic revision {report.belongs_to}.")
    if report.versions:
        print(f"Start Letta {' or '.join(report.versions)} on it (pin the image, e.g. letta/letta:{report.versions[-1]}).")
    if report.safety_dump:
        print(f"What it held before the rollback is in {report.safety_dump}.")
    return 0


def _register_upgrade(sub) -> None:
    p = sub.add_parser("upgrade", help="plan (dry run) or carry out an upgrade, backup first; --compose FILE "
                                       "upgrades a compose stack in one command and rolls back by itself")
    compose_arguments(p, "the release, server, database and pin are read from it; --apply backs up, stops, "
                         "migrates, re-pins, starts and verifies, and puts everything back on any failure; they are")
    p.add_argument("--rehearse", action="store_true",
                   help="with --compose: rehearse the upgrade on a snapshot of the stack's database first (on this "
                        "machine, as `letta-compat rehearse --dsn` does); --apply goes on only if it is intact")
    p.add_argument("--from", dest="from_version", metavar="V1", type=versions.spelled,
                   help="the version running now (not with --compose)")
    p.add_argument("--to", dest="to_version", required=True, metavar="V2", type=versions.spelled,
                   help="the version to upgrade to")
    p.add_argument("--dsn", default=os.environ.get("LETTA_PG_URI"),
                   help="Letta's database, postgresql://USER:PASSWORD@HOST:5432/DB (default $LETTA_PG_URI, which "
                        "keeps the password off the command line; never printed; not with --compose)")
    _server_args(p, or_compose=True)
    p.add_argument("--backup", required=True, metavar="DIR",
                   help="a verified backup of this server, or an empty directory to make one in")
    p.add_argument("--strategy", choices=("in-place", "recreate"), default="in-place",
                   help="in-place: migrate the database (default); recreate: drop it, migrate it empty, restore")
    p.add_argument("--encryption-key-env", metavar="NAME",
                   help="the environment variable holding your server's LETTA_ENCRYPTION_KEY: alembic gets it in "
                        "its environment (never on a command line, never printed), so Letta's data-encryption "
                        "backfills run; without it they are skipped")
    p.add_argument("--apply", action="store_true", help="carry it out (without: print the plan, change nothing)")
    p.set_defaults(func=cmd_upgrade)


def _register_rollback(sub) -> None:
    p = sub.add_parser("rollback", help="put the database back from a backup's pg_dump archive")
    dsn_argument(p)
    p.add_argument("--backup", required=True, metavar="DIR", help="the backup made before the upgrade")
    p.set_defaults(func=cmd_rollback)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the migration subcommands to the ``letta-compat`` parser."""
    _register_backup(sub)
    _register_restore(sub)
    _register_verify(sub)
    _register_convert(sub)
    _register_upgrade(sub)
    _register_rollback(sub)
