"""Time the operator's run: the shipped suite on a matrix, end to end, against its floor.

    python benchmarks/bench_suite.py [--cold] [--matrix matrices/default.toml] [--backend native|docker ...]
                                     [--workers auto|N] [--out FILE]

It runs exactly what an operator runs, the README's main command (``pytest --letta-matrix
FILE --letta-suite-only -n auto --dist loadgroup`` in an empty directory: the shipped suite
and nothing else, independent matrix entries side by side) and prints one JSON object:

* ``wall_s``: the pytest run, start to exit;
* ``server_starts`` and ``server_start_s``: every Letta server the run started, and the sum of
  their start-to-healthy times (a server prestarted while the previous entry's tests ran counts
  whole here, though the tests waited for none or part of it: floor_ratio below 1 is that overlap);
* ``migration_s``: alembic time the run paid (template migrations on a cold cache, and each
  upgrade path's ``apply_upgrade``: backup gate, alembic, fix-ups);
* ``tests_call_s``: the sum of the tests' call phases (``--durations``);
* ``floor_s`` = server_start_s + migration_s + tests_call_s, ``floor_ratio`` = wall_s / floor_s;
* ``entries``: per matrix entry, its tests' call time and its fixture (setup + teardown) time;
* ``template_clone_s``: the median time to copy a database from a template.

Everything comes from what the plugin already prints (the ``letta-compat`` terminal section:
servers healthy after N s, migrations, upgrade paths, database copies) and pytest's
``--durations``; nothing is timed twice. With ``--workers N`` (xdist) the workers print no
``letta-compat`` section, so only wall and test times are known: measure the floor with
``--workers 0`` (one process, entries one after the other, servers started ahead).
--cold uses an empty letta-compat cache (installs and migrations happen; uv's own download
cache stays warm). Targets (here, never in tests), warm, 2 cores: the main command's wall
<= 480 s; with --workers 0, floor_ratio <= 1.3; cold <= 2x warm; template_clone_s <= 0.2.
bench_matrix.py times one server's phases.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what a phase waited for a server: all of its start, or of a prestarted one the part not yet done when
# the test took it ("prestarted, ready before ..." and "never used": nothing; see reporting.server_start_line)
HEALTHY = re.compile(r"^Letta (\S+) healthy ([\d.]+) s after its start \([^;)]*"
                     r"(?:; (?:prestarted, ([\d.]+) s of it waited for )?in the (\w+) of (\S+)\))?")
MIGRATED = re.compile(r"^alembic upgrade to (\S+)'s head: ([\d.]+) s")
PATH_UPGRADED = re.compile(r"^upgrade path (.+) upgraded \(apply_upgrade\): ([\d.]+) s")
PATH_SEEDED = re.compile(r"^upgrade path (.+) seeded .*: ([\d.]+) s")
COPIES = re.compile(r"^databases copied from a template: (\d+), median ([\d.]+) s, longest ([\d.]+) s")
DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)")
ENTRY = re.compile(r"\[((?:server|upgrade|rehearsal)-[^\]-]+(?:-to-[^\]-]+)?)")
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error).*) in [\d.]+s")


def suite_command(matrix: Path, backend: str | None, workers: str, cache: Path | None, workdir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--letta-matrix", str(matrix), "--letta-suite-only",
           "-p", "no:cacheprovider", "--durations=0", "--durations-min=0", "-q", "-rN",
           "--basetemp", str(workdir / "basetemp")]
    if workers != "0":  # an entry stays on one worker: its server starts once
        cmd += ["-n", workers, "--dist", "loadgroup"]
    if backend:
        cmd += ["--letta-backend", backend]
    if cache is not None:
        cmd += ["--letta-cache-dir", str(cache)]
    return cmd


def parse(output: str) -> dict:
    found: dict = {"server_start_s": [], "migrations": {}, "paths": {}, "calls": 0.0, "entries": {}}
    in_phase: dict[tuple[str, str], float] = defaultdict(float)  # (phase, nodeid) -> server starts waited for there
    entries: dict[str, dict[str, float]] = defaultdict(
        lambda: {"tests_call_s": 0.0, "fixtures_s": 0.0, "server_start_s": 0.0, "tests": 0})
    for line in output.splitlines():
        line = line.strip()
        if m := HEALTHY.match(line):
            found["server_start_s"].append((m[1], float(m[2])))
            if m[4]:
                in_phase[(m[4], m[5])] += float(m[3] or m[2])
        elif m := MIGRATED.match(line):
            found["migrations"][m[1]] = float(m[2])
        elif m := PATH_UPGRADED.match(line):
            found["paths"].setdefault(m[1], {})["upgrade_s"] = float(m[2])
        elif m := PATH_SEEDED.match(line):
            found["paths"].setdefault(m[1], {})["seed_s"] = float(m[2])
        elif m := COPIES.match(line):
            found["copies"] = {"count": int(m[1]), "median_s": float(m[2]), "longest_s": float(m[3])}
        elif m := DURATION.match(line):
            seconds, phase, nodeid = float(m[1]), m[2], m[3]
            starts = in_phase.get((phase, nodeid), 0.0)
            seconds = max(0.0, seconds - starts)  # the server starts count apart
            entry = ENTRY.search(nodeid)
            bucket = entries[entry[1] if entry else "other"]
            bucket["server_start_s"] += starts
            if phase == "call":
                found["calls"] += seconds
                bucket["tests_call_s"] += seconds
                bucket["tests"] += 1
            else:
                bucket["fixtures_s"] += seconds
        elif m := SUMMARY.match(line):
            found["outcome"] = m[1]
    # per entry: (everything its tests took) / (its server starts + its tests' calls)
    found["entries"] = {k: {"tests": v["tests"], "server_start_s": round(v["server_start_s"], 1),
                            "tests_call_s": round(v["tests_call_s"], 1), "other_fixture_s": round(v["fixtures_s"], 1),
                            "overhead_ratio": round(sum(v[x] for x in ("tests_call_s", "fixtures_s", "server_start_s"))
                                                    / (v["tests_call_s"] + v["server_start_s"]), 2)
                            if v["tests_call_s"] + v["server_start_s"] else None}
                        for k, v in sorted(entries.items()) if v["tests"]}
    return found


def machine() -> dict:
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    import os

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": load}


def run_once(matrix: Path, shown_matrix: str, backend: str | None, workers: str, cold: bool) -> tuple[dict, str]:
    """One suite run on ``backend``: its JSON result and its output."""
    workdir = Path(tempfile.mkdtemp(prefix="letta-compat-bench-suite-"))
    cache = workdir / "cache" if cold else None
    conditions = machine()
    started = time.monotonic()
    proc = subprocess.run(suite_command(matrix, backend, workers, cache, workdir), cwd=workdir,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)  # basetemp, and the cold cache: the output is kept with --out
    found = parse(proc.stdout)
    starts = found["server_start_s"]
    migration = sum(found["migrations"].values()) + sum(p.get("upgrade_s", 0.0) for p in found["paths"].values())
    server_s = sum(s for _, s in starts)
    floor = server_s + migration + found["calls"]
    known = workers == "0"
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "matrix": shown_matrix,
        "mode": "cold" if cold else "warm", "backend": backend or "matrix's", "workers": workers,
        "exit_code": proc.returncode, "outcome": found.get("outcome"), "wall_s": round(wall, 1),
        "server_starts": len(starts) if known else None,
        "server_starts_by_version": {v: sum(1 for w, _ in starts if w == v) for v in sorted({v for v, _ in starts})},
        "server_start_s": round(server_s, 1) if known else None, "migration_s": round(migration, 1) if known else None,
        "upgrade_paths": found["paths"], "tests_call_s": round(found["calls"], 1),
        "floor_s": round(floor, 1) if known else None,
        "floor_ratio": round(wall / floor, 3) if known and floor else None,
        "template_clone_s": found.get("copies", {}).get("median_s"), "database_copies": found.get("copies"),
        "entries": found["entries"], "machine": {**conditions, "load_after": machine()["load_before"]},
    }
    if proc.returncode not in (0, 1):  # pytest itself stopped (usage, collection, internal): say why, not nulls
        result["error"] = pytest_error(proc)
        print(f"bench_suite: pytest exited {proc.returncode}: {result['error']}", file=sys.stderr)
    return result, proc.stdout + proc.stderr


def pytest_error(proc: subprocess.CompletedProcess) -> str:
    """The lines in which pytest said why it stopped (its usage errors go to stderr)."""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("ERROR", "E ", "pytest: error", "error:"))
            or "error:" in line]
    return " | ".join((said or lines)[-5:]) or f"no output (exit {proc.returncode})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matrix", default="matrices/default.toml")
    p.add_argument("--backend", choices=("native", "docker"), action="append", default=None,
                   help="default: the matrix's backend; given twice (--backend native --backend docker), the "
                        "same matrix runs on each in turn and the JSON compares their wall times")
    p.add_argument("--cold", action="store_true", help="start from an empty letta-compat cache")
    p.add_argument("--workers", default="auto", help="xdist workers (-n) as the main command runs them (auto: one "
                                                     "per core); 0: one process, which measures the floor too")
    p.add_argument("--out", default=None, help="also write the JSON (and each run's output beside it, .log)")
    args = p.parse_args(argv)
    matrix = Path(args.matrix)
    matrix = matrix if matrix.is_absolute() else (Path.cwd() / matrix).resolve()
    runs = [run_once(matrix, args.matrix, backend, args.workers, args.cold) for backend in args.backend or [None]]
    if len(runs) == 1:
        document = runs[0][0]
    else:
        first = runs[0][0]
        document = {"matrix": args.matrix, "runs": [result for result, _ in runs],
                    "wall_ratio": {f"{r['backend']}/{first['backend']}": round(r["wall_s"] / first["wall_s"], 3)
                                   for r, _ in runs[1:]}}
    print(json.dumps(document, indent=2))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2))
        out.with_suffix(".log").write_text("\n".join(output for _, output in runs))
    return 0 if all(result["exit_code"] == 0 for result, _ in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
