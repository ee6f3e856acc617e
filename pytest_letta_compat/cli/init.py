"""``letta-compat init``: a matrix pinned to the operator's Letta, and the CI gate workflow."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_init(args: argparse.Namespace) -> int:
    from ..matrix import scaffold

    directory = Path(args.dir)
    deployment = scaffold.read_deployment(directory, compose=args.compose, from_version=args.from_version,
                                          letta_code=args.letta_code)
    written = scaffold.write(directory, scaffold.files_for(deployment), force=args.force)
    newer = deployment.newer_releases
    for rel in written:
        if rel == Path(scaffold.MATRIX_FILE):
            targets = newer[0] + (f" ... {newer[-1]}" if len(newer) > 1 else "") if newer else "none newer known"
            what = (f"Letta {deployment.version}{', secure' if deployment.secure else ''}; "
                    f"{len(newer)} upgrade path{'' if len(newer) == 1 else 's'} ({targets}); "
                    f"Letta Code: {', '.join(deployment.letta_code) or 'none'}")
        else:
            what = f"runs `letta-compat gate` on pull requests that change {deployment.compose}"
        print(f"written: {(directory / rel).as_posix()}  ({what})")
    if deployment.compose is None:
        print("no CI workflow: the gate watches a compose file; run init again with --compose FILE --force for it")
    matrix = (directory / scaffold.MATRIX_FILE).as_posix()
    print(f"next: pytest --letta-matrix {matrix} --letta-suite --letta-checks smoke   "
          "(your server on real PostgreSQL, about a minute once installed)")
    if newer:
        print(f"then: pytest --letta-matrix {matrix} --letta-suite   (every check and upgrade path)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    init = sub.add_parser("init", help="write letta-matrix.toml for your Letta and a CI workflow that gates bumps")
    init.add_argument("--compose", metavar="FILE", help="your Docker Compose file; its pinned Letta image is the "
                                                        "version you run today")
    init.add_argument("--from", dest="from_version", metavar="VERSION",
                      help="the Letta version you run today (without --compose, or when it pins a digest only)")
    init.add_argument("--letta-code", metavar="VERSION", action="append", default=[],
                      help="a Letta Code version your users run (repeatable; default none)")
    init.add_argument("--dir", default=".", help="the repository root to write into (default: here)")
    init.add_argument("--force", action="store_true", help="replace files init wrote before")
    init.set_defaults(func=cmd_init)
