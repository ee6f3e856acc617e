"""``letta-compat``: the operator's command line (no pytest involved).

Every command group lives in its own module with a ``register(sub)``; this module only lists them.
Exit codes: 0 success, 1 a check found problems, 2 bad input or an environment problem
(always one readable paragraph on stderr, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import LettaCompatError
from .. import progress
from . import advise, images, init, move, operations, rehearse, reports, schema, servers

GROUPS = (init, servers, advise, reports, schema, operations, move, rehearse, images)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="letta-compat", description="Check and carry self-hosted Letta across upgrades.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--cache-dir", help="cache for Letta installs (default $LETTA_COMPAT_CACHE or ~/.cache/pytest-letta-compat)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "needs_dsn", False) and not args.dsn:
        print(f"letta-compat: error: {operations.DSN_MISSING}", file=sys.stderr)
        return 2
    try:
        with progress.reporting_to(lambda line: print(f"letta-compat: {line}", file=sys.stderr, flush=True)):
            return args.func(args)
    except LettaCompatError as exc:
        print(f"letta-compat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `letta-compat versions | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
