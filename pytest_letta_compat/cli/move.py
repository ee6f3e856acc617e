"""``letta-compat move-to-local``: agents of a Letta server (or a backup) into Letta Code's local backend."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import LettaCompatError
from .operations import compose_arguments


def cmd_move_to_local(args: argparse.Namespace) -> int:
    from ..cache import cache_root
    from ..operations.move_to_local import move_to_local, report_json

    if sum(map(bool, (args.url, args.backup, args.compose))) != 1:
        raise LettaCompatError("give the source: --url URL (a running server), --compose FILE (the server of your "
                               "compose stack) or --backup DIR (one of our backups).")
    if args.backup and not Path(args.backup).is_dir():
        raise LettaCompatError(f"--backup {args.backup}: no such directory.")

    def move(url: str | None, api_key: str | None):
        return move_to_local(
            letta_code=args.letta_code, storage_dir=Path(args.storage_dir), url=url, api_key=api_key,
            backup_dir=Path(args.backup) if args.backup else None, model=args.model, agents=args.agent or None,
            dry_run=args.dry_run, merge=args.merge, with_secret_values=args.with_secret_values, prove=args.prove,
            cache=cache_root(args.cache_dir), prove_progress=lambda line: print(f"letta-compat: {line}", file=sys.stderr))

    if args.compose:
        from ..operations.compose_commands import stack_endpoints

        with stack_endpoints(args.compose, args.service, database=False) as (url, password, _):
            report = move(url, password)
    else:
        report = move(args.url, (args.api_key or os.environ.get("LETTA_API_KEY") or None) if args.url else None)
    print(json.dumps(report_json(report), indent=1, ensure_ascii=False) if args.json else report.format())
    if not report.ok:
        print(f"{sum(not o.ok for o in report.outcomes)} of {len(report.outcomes)} agents were NOT moved; fix the "
              "cause and run the same command again: it only adds what is missing", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("move-to-local", help="move agents off a Letta server into Letta Code's local backend (files)",
                       description="Read every agent (or the --agent ones) of a Letta server or of a letta-compat "
                                   "backup and write it into the local backend of a proven Letta Code release: "
                                   "record, default conversation with the whole history, memory blocks as "
                                   "committed memfs files. What has no place there is written beside it and listed.")
    p.add_argument("--url", help="the Letta server to read (only read, never changed)")
    p.add_argument("--api-key", default=None, help="the server password (default $LETTA_API_KEY; never printed)")
    p.add_argument("--backup", metavar="DIR", help="read a `letta-compat backup` directory instead of a server")
    compose_arguments(p, "the server and its password are")
    p.add_argument("--letta-code", required=True, metavar="VERSION",
                   help="the Letta Code release that will read the files (refused unless proven)")
    p.add_argument("--storage-dir", required=True, metavar="DIR",
                   help="Letta Code's local backend directory ($LETTA_LOCAL_BACKEND_DIR, default ~/.letta/lc-local-backend)")
    p.add_argument("--model", metavar="HANDLE", help="local model handle for every moved agent, e.g. lmstudio/qwen3-8b "
                                                      "(default: mapped from each agent's model config, reported)")
    p.add_argument("--agent", action="append", metavar="NAME", help="move only this agent (exact name or id; repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the per-agent plan, write nothing")
    p.add_argument("--merge", action="store_true", help="add to a storage dir that already holds agents")
    p.add_argument("--with-secret-values", action="store_true",
                   help="also write tool environment variable VALUES into the left-behind files (owner-only); "
                        "by default only their names are written")
    p.add_argument("--prove", action="store_true",
                   help="for a Letta Code release not proven yet: prove it first on a scratch copy of this move (the "
                        "real Letta Code lists and answers as the moved agents; about a minute), then move")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_move_to_local)
