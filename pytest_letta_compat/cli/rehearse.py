"""``letta-compat rehearse``: prove an upgrade on a copy of your own database before the bump."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import redact
from ..matrix.model import BACKENDS
from .. import versions
from .operations import encryption_key_option


def cmd_rehearse(args: argparse.Namespace) -> int:
    from ..cache import cache_root
    from ..operations.rehearse import rehearse
    from ..operations.rehearse_request import RehearsalRequest
    from ..report.rehearsal import format_report, write_report

    request = RehearsalRequest(targets=args.to, cache=cache_root(args.cache_dir),
                               dump=Path(args.dump) if args.dump else None, dsn=args.dsn,
                               encryption_key=encryption_key_option(args),
                               letta_code=args.letta_code or [],
                               sample=args.sample, postgres_major=args.postgres, backend=args.backend)
    report = rehearse(request, progress=lambda line: print(redact(line), file=sys.stderr, flush=True))
    for line in format_report(report):
        print(redact(line))
    if args.report:
        for path in write_report(report, Path(args.report)):
            print(f"report: {path}")
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rehearse", help="rehearse an upgrade on a copy of your database, agent by agent (exit 0 intact, 1 not, 2 bad input)",
        description="Restore your Letta database (a pg_dump, or a live database read once) into a private "
                    "PostgreSQL, upgrade copies of it the way the official image does and the way "
                    "`letta-compat upgrade` does, start each target release on them and compare every agent "
                    "before and after. Nothing outside this machine is reached: every model endpoint and "
                    "provider points at a local fake LLM, stored keys are blanked. Progress goes to stderr.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dump", metavar="FILE",
                        help="pg_dump of Letta's database: custom format (-Fc) or plain SQL; take it with "
                             "`docker compose exec -T letta_db pg_dump -U letta -Fc letta > letta.dump`")
    source.add_argument("--dsn", help="a live database instead, only ever read (one pg_dump snapshot); the "
                                      "password is never printed")
    p.add_argument("--to", action="append", required=True, metavar="VERSION", type=versions.spelled,
                   help="a release to rehearse the upgrade to (repeatable), e.g. --to 0.16.8")
    p.add_argument("--report", metavar="PATH", help="write the report: PATH.json, .md or .html by suffix "
                                                    "(a bare PATH writes all three)")
    p.add_argument("--encryption-key-env", metavar="NAME",
                   help="the environment variable holding your LETTA_ENCRYPTION_KEY: the servers and the alembic "
                        "runs get it in their environment (never printed), so Letta's data-encryption backfills "
                        "run as on your server; without it, values stored encrypted are reported as not checked")
    p.add_argument("--letta-code", action="append", metavar="VERSION",
                   help="a Letta Code release (repeatable) that resumes an agent of your dump in one headless turn "
                        "on each target, on the letta-compat path's copy; exit 1 if it cannot")
    p.add_argument("--sample", type=int, default=3, metavar="N",
                   help="agents that exchange one real message (with the fake LLM) on each path (default 3)")
    p.add_argument("--postgres", type=int, choices=(16, 18), default=16,
                   help="the embedded PostgreSQL major to restore into (default 16; 18 reads newer dumps; "
                        "native backend only)")
    p.add_argument("--backend", choices=BACKENDS, default="native",
                   help="where the copies and target servers run: native (embedded PostgreSQL, Letta as "
                        "processes; the default) or docker (the pgvector and letta/letta images, or the local "
                        "stand-ins `letta-compat images build` makes)")
    p.set_defaults(func=cmd_rehearse)
