"""``letta-compat init``: a matrix pinned to the operator's Letta, and the CI gate workflow."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import versions


def _letta_code_beside(directory: Path) -> tuple[list[str], str | None]:
    """The Letta Code the repository pins (package.json, requirements*.txt, pyproject.toml)."""
    from ..report.letta_code_gate import pinned_letta_code

    if not directory.is_dir():  # write() says what is wrong with --dir
        return [], None
    pin = pinned_letta_code(directory.resolve(), None)
    return ([pin.version], pin.where) if pin else ([], None)


def cmd_init(args: argparse.Namespace) -> int:
    from .. import self_wheel
    from ..matrix import scaffold
    from ..report.letta_code_gate import unbounded_letta

    directory = Path(args.dir)
    letta_code, pinned_in = (args.letta_code, "--letta-code") if args.letta_code else _letta_code_beside(directory)
    deployment = scaffold.read_deployment(directory, compose=args.compose, from_version=args.from_version,
                                          letta_code=letta_code)
    if args.install:
        deployment = dataclasses.replace(deployment, install=args.install)
    files = scaffold.files_for(deployment)
    wheel = Path(scaffold.WHEEL_DIR) / self_wheel.WHEEL_NAME
    ship_wheel = not args.install and scaffold.WORKFLOW_FILE in files
    written = scaffold.write(directory, {**files, **({wheel: ""} if ship_wheel else {})}, force=args.force)
    if ship_wheel:
        self_wheel.build(directory / scaffold.WHEEL_DIR)
    newer = deployment.newer_releases
    for rel in written:
        if rel == Path(scaffold.MATRIX_FILE):
            targets = newer[0] + (f" ... {newer[-1]}" if len(newer) > 1 else "") if newer else "none newer known"
            code = f"{', '.join(deployment.letta_code)} (from {pinned_in})" if deployment.letta_code else "none found"
            what = (f"Letta {deployment.version}{', secure' if deployment.secure else ''}; "
                    f"{len(newer)} upgrade path{'' if len(newer) == 1 else 's'} ({targets}); Letta Code: {code}")
        elif rel == wheel:
            what = "this package's wheel, which the workflow installs (it is on no public index yet): commit it"
        else:
            what = (f"runs `letta-compat gate` on pull requests that change {deployment.compose}, and "
                    "`letta-compat watch` daily against the newest Letta Code")
        print(f"written: {(directory / rel).as_posix()}  ({what})")
    if deployment.compose is None:
        print("no CI workflow: the gate watches a compose file; run init again with --compose FILE --force for it")
    unbounded = unbounded_letta(directory.resolve()) if directory.is_dir() else None
    if unbounded:
        print(f"warning: {unbounded} has no upper bound. PyPI's `letta` is the Letta server up to 0.16.8 and Letta "
              "Code from 0.32.13 on: the next install replaces the server with another program. Pin letta==0.16.8 "
              "(the final server release).")
    matrix = (directory / scaffold.MATRIX_FILE).as_posix()
    print(f"next: pytest --letta-matrix {matrix} --letta-suite --letta-checks smoke -k server-{deployment.version}   "
          "(your server alone on real PostgreSQL: the 6 smoke checks, about 20 s once installed)")
    if newer:
        print(f"then: pytest --letta-matrix {matrix} --letta-suite   (every check and upgrade path: two servers "
              "per path, several minutes each)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    init = sub.add_parser("init", help="write letta-matrix.toml for your Letta and a CI workflow that gates bumps")
    init.add_argument("--compose", metavar="FILE", help="your Docker Compose file; its pinned Letta image is the "
                                                        "version you run today")
    init.add_argument("--from", dest="from_version", metavar="VERSION", type=versions.spelled,
                      help="the Letta version you run today (without --compose, or when it pins a digest only)")
    init.add_argument("--letta-code", metavar="VERSION", action="append", default=[],
                      help="a Letta Code version your users run (repeatable; default: the one package.json, "
                           "requirements*.txt or pyproject.toml pins)")
    init.add_argument("--install", metavar="SPEC",
                      help="what the workflow installs with pip (default: this package's wheel, written into "
                           ".letta-compat/; e.g. a git+https:// URL of your fork instead)")
    init.add_argument("--dir", default=".", help="the repository root to write into (default: here)")
    init.add_argument("--force", action="store_true", help="replace files init wrote before")
    init.set_defaults(func=cmd_init)
