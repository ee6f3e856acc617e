"""How long the quick look `init` prints takes, per pinned release.

    python benchmarks/bench_quick_look.py [--pin 0.11.3 --pin 0.16.2 ...] [--out FILE]

For each pin: `letta-compat init --from PIN` in an empty directory, then the first command it
prints (`pytest --letta-matrix letta-matrix.toml --letta-suite --letta-checks smoke -k
server-PIN`), run as printed, with the cache as it is (warm: Letta installed). Prints one JSON
object: per pin the wall time, the tests that ran and pytest's exit code. `init` and
docs/ci-gate.md quote these times; the measured JSON goes to docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"(\d+ (?:passed|failed|skipped|error)[^\n]*) in [\d.]+s")
DEFAULT_PINS = ("0.11.3", "0.13.0", "0.16.2", "0.16.8")


def quick_look(pin: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="letta-compat-bench-quick-") as tmp:
        init = subprocess.run([str(BIN / "letta-compat"), "init", "--from", pin, "--dir", tmp],
                              capture_output=True, text=True, cwd=tmp)
        if init.returncode != 0:
            return {"error": f"init exited {init.returncode}: {init.stderr.strip()[-300:]}"}
        line = next(line for line in init.stdout.splitlines() if line.startswith("next: "))
        command = shlex.split(line.removeprefix("next: ").split("   (")[0])
        command[0] = str(BIN / command[0])  # pytest of this environment
        started = time.monotonic()
        proc = subprocess.run([*command, "-p", "no:cacheprovider"], capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        wall = time.monotonic() - started
        summary = SUMMARY.search(proc.stdout)
        return {"command": " ".join(shlex.quote(c) for c in [Path(command[0]).name, *command[1:]]),
                "wall_s": round(wall, 1), "exit_code": proc.returncode,
                "outcome": summary.group(1) if summary else proc.stdout.strip()[-300:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pin", action="append", default=None, help=f"default: {', '.join(DEFAULT_PINS)}")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "pins": {pin: quick_look(pin) for pin in args.pin or DEFAULT_PINS}}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r.get("exit_code") == 0 for r in result["pins"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
