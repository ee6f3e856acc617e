"""Measure where a matrix run spends its time, phase by phase, and the plugin's overhead.

    python benchmarks/bench_matrix.py [--matrix matrices/default.toml] [--cold] [--out FILE]

For each [[server]] entry it times what the pytest layer does for that entry: copy the
version's template database, start the server until healthy, run a fixed workload (create
an agent, exchange three messages, list them), stop it in the background as the plugin's
``stop_soon`` does (the next entry never waits for it). The overhead ratio is
    entry wall time / (server start + migrate + test time)
where "migrate" is the alembic time the entry really paid (zero once the template dump is
cached). --cold uses an empty letta-compat cache (installs and migrations happen; uv's own
download cache stays warm). Targets (here, not in tests): warm ratio <= 1.15, clone <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_letta_compat.rest.agents import create_agent, send_message  # noqa: E402
from pytest_letta_compat.backends.native import NativeBackend  # noqa: E402
from pytest_letta_compat.cache import cache_root  # noqa: E402
from pytest_letta_compat.provision.fake_llm import FakeLLM  # noqa: E402
from pytest_letta_compat.provision.install import ensure_server  # noqa: E402
from pytest_letta_compat.matrix.model import load_matrix  # noqa: E402


def timed(fn):
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def workload(stack, llm) -> None:
    with stack.client() as client:
        agent = create_agent(client, "bench-agent", llm.base_url)
        for i in range(3):
            send_message(client, agent["id"], f"bench {i}")
        client.get(f"/v1/agents/{agent['id']}/messages", params={"limit": 50}).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matrix", default="matrices/default.toml")
    p.add_argument("--cold", action="store_true", help="start from an empty letta-compat cache")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/bench-<cold|warm>.json)")
    args = p.parse_args(argv)
    matrix = load_matrix(args.matrix)
    cache = Path(tempfile.mkdtemp(prefix="letta-compat-bench-cache-")) if args.cold else cache_root()
    result: dict = {"matrix": args.matrix, "mode": "cold" if args.cold else "warm", "entries": []}
    run_start = time.monotonic()
    with FakeLLM() as llm:
        backend = NativeBackend(postgres=matrix.postgres, cache=cache, llm_env=llm.server_env())
        _, result["postgres_start_s"] = timed(backend.start)
        try:
            for entry in matrix.servers:
                install, install_s = timed(lambda: ensure_server(entry.version, cache))
                _, warm_install_s = timed(lambda: ensure_server(entry.version, cache))
                entry_start = time.monotonic()
                backend.template(entry.version)
                migrate_s = backend.timings.get(f"migrate_{entry.version}", 0.0)
                # what the pytest layer does for the entry: a server on a fresh copy of the template,
                # the tests, then a stop in the background (stop_soon: nobody waits for it)
                stack = backend.start_server(entry.version, secure=entry.secure)
                _, test_s = timed(lambda: workload(stack, llm))
                backend.stop_soon(stack)
                wall = time.monotonic() - entry_start
                clones = []  # copy timings, outside the entry's wall
                for i in range(5):
                    name = f"bench_{entry.version.replace('.', '_')}_{i}"
                    clones.append(timed(lambda: backend.create_database(name, version=entry.version))[1])
                useful = stack.started_in + migrate_s + test_s
                result["entries"].append({
                    "entry": entry.id, "install_s": round(install_s, 2), "install_warm_s": round(warm_install_s, 3),
                    "migrate_s": round(migrate_s, 2),
                    "template_restore_s": round(backend.timings.get(f"template_{entry.version}", 0.0), 3),
                    "template_clone_s": round(statistics.median(clones), 3),
                    "server_start_to_healthy_s": round(stack.started_in, 2), "tests_s": round(test_s, 2),
                    "entry_wall_s": round(wall, 2), "overhead_ratio": round(wall / useful, 3),
                })
                print(json.dumps(result["entries"][-1]), flush=True)
        finally:
            backend.cleanup()
    result["run_wall_s"] = round(time.monotonic() - run_start, 2)
    result["sum_useful_s"] = round(sum(e["server_start_to_healthy_s"] + e["tests_s"] for e in result["entries"]), 2)
    result["run_vs_useful"] = round(result["run_wall_s"] / result["sum_useful_s"], 3)
    out = Path(args.out or Path(__file__).parent / "results" / f"bench-{result['mode']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}: run {result['run_wall_s']} s, {result['run_vs_useful']}x the servers' own start + test time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
