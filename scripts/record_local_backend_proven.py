#!/usr/bin/env python3
"""Prove Letta Code releases for ``letta-compat move-to-local`` and record them in the shipped
list, pytest_letta_compat/data/local_backend_proven.json. The only writer of that file.

    .venv/bin/python scripts/record_local_backend_proven.py 0.35.1 [0.34.12 ...]
    .venv/bin/python scripts/record_local_backend_proven.py --forget 0.30.0

It runs tests/tools/test_move_to_local.py (real 0.16.8 server, real Letta Code, fake LLM) for
the given releases besides the ones already listed; a release is recorded only when every one
of its proofs passed. When a listed release fails, nothing is written and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pytest_letta_compat.operations.move_to_local import PROVEN_FILE, forget_proven, record_proven  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="*", help="Letta Code releases to prove besides the listed ones")
    ap.add_argument("--forget", nargs="+", metavar="VERSION", help="take releases off the list (no run)")
    ap.add_argument("--matrix", default="matrices/ci.toml", help="the matrix whose backend runs the proof")
    args = ap.parse_args(argv)
    if args.forget:
        for version in args.forget:
            forget_proven(version)
            print(f"Letta Code {version}: not listed as proven")
        return 0
    for version in args.versions:
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            ap.error(f"{version!r} is not a release number such as 0.34.12")
    with tempfile.TemporaryDirectory(prefix="letta-compat-prove-") as tmp:
        out = Path(tmp) / "proven.json"
        env = {**os.environ, "LETTA_COMPAT_PROVE_LETTA_CODE": ",".join(args.versions),
               "LETTA_COMPAT_PROVEN_OUT": str(out)}
        command = [sys.executable, "-m", "pytest", "tests/tools/test_move_to_local.py", "--letta-matrix",
                   args.matrix, "-p", "no:cacheprovider", "-q"]
        print("running:", " ".join(command[2:]), flush=True)
        run = subprocess.run(command, cwd=ROOT, env=env)
        facts = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    if run.returncode != 0:
        print(f"not recorded: the proof failed (pytest exit {run.returncode}); passed for: "
              f"{', '.join(sorted(facts)) or 'none'}", file=sys.stderr)
        return 1
    for version, found in facts.items():
        record_proven(version, found)
        print(f"Letta Code {version}: proven ({found['messages']} messages, {found['agents']} agents)")
    print(f"wrote {PROVEN_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
