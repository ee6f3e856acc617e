"""How long ``letta-compat rehearse`` takes on a big database, and whether its memory grows with history.

    python benchmarks/bench_rehearse.py [--agents 200] [--messages 50000] [--to 0.16.8] [--out FILE]

Builds (once, cached beside the Letta installs) a 0.11.3 database with AGENTS agents made
through the real 0.11.3 API and MESSAGES stored messages in all (each agent's own rows, copied
with new ids), dumps it with ``pg_dump -Fc``, then times one rehearsal to one target, warm
(Letta installs and migration scripts cached). Memory: the peak RSS of this process for a
rehearsal of the same agents with a fifth of the messages, then with all of them; the
inventory pages through agents and counts history in SQL, so the two should be close.
Target (here, not in tests): <= 5 minutes warm on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_letta_compat.backends.native import NativeBackend  # noqa: E402
from pytest_letta_compat.cache import cache_root  # noqa: E402
from pytest_letta_compat.postgres.client import pg_dump  # noqa: E402
from pytest_letta_compat.provision.fake_llm import FakeLLM  # noqa: E402
from pytest_letta_compat.rest.agents import create_agent  # noqa: E402

OLD = "0.11.3"


def build_dump(cache: Path, agents: int, messages: int, target: Path) -> None:
    with FakeLLM() as llm:
        backend = NativeBackend(cache=cache, llm_env=llm.server_env()).start()
        try:
            name = "bench_source"
            backend.create_database(name, version=OLD)
            stack = backend.start_server(OLD, database=name)
            with stack.client() as client:
                ids = [create_agent(client, f"bench agent {i:04d}", llm.base_url)["id"] for i in range(agents)]
            stack.stop()
            with backend.connect(name) as conn:
                columns = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' AND "
                    "table_schema = current_schema() AND column_name NOT IN ('id', 'sequence_id') "
                    "ORDER BY ordinal_position")]
                listed = ", ".join(f'"{c}"' for c in columns)
                (have,) = conn.execute("SELECT count(*) FROM messages").fetchone()
                per_agent = max(0, messages - have) // len(ids)
                (seeds,) = conn.execute("SELECT count(*) FROM messages WHERE role <> 'system' AND agent_id = %s",
                                        (ids[0],)).fetchone()
                rounds = -(-per_agent // max(seeds, 1))
                conn.execute(
                    f"INSERT INTO messages (id, {listed}) SELECT 'message-' || gen_random_uuid(), {listed} FROM "
                    f"(SELECT m.*, row_number() OVER (PARTITION BY m.agent_id ORDER BY g, m.id) AS n FROM messages m, "
                    f"generate_series(1, %s) g WHERE m.role <> 'system') m WHERE n <= %s", (rounds, per_agent))
                (total,) = conn.execute("SELECT count(*) FROM messages").fetchone()
            print(f"built {agents} agents, {total} stored messages", flush=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            pg_dump(backend.dsn(name), target)
        finally:
            backend.cleanup()


def rehearse_once(cache: Path, dump: Path, target: str) -> dict:
    """One rehearsal in a child process: its wall time and peak RSS (MiB)."""
    code = ("import json, resource, sys, time\n"
            "from pathlib import Path\n"
            "from pytest_letta_compat.operations.rehearse import rehearse\n"
            "from pytest_letta_compat.operations.rehearse_request import RehearsalRequest\n"
            "t = time.monotonic()\n"
            f"r = rehearse(RehearsalRequest(targets=[{target!r}], cache=Path({str(cache)!r}), dump=Path({str(dump)!r})),"
            " progress=lambda line: print(line, file=sys.stderr, flush=True))\n"
            "print(json.dumps({'seconds': time.monotonic() - t, 'ok': r.ok, 'timings': r.timings,"
            " 'agents': r.source['agents'], 'messages': r.source['stored_messages'],"
            " 'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--to", default="0.16.8")
    p.add_argument("--skip-small", action="store_true", help="only the full-size rehearsal (no memory comparison)")
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args()
    cache = cache_root()
    results = {}
    sizes = [args.messages] if args.skip_small else [args.messages // 5, args.messages]
    for messages in sizes:
        dump = cache / "bench" / f"rehearse-0.11.3-{args.agents}x{messages}.dump"
        if not dump.exists():
            began = time.monotonic()
            with tempfile.TemporaryDirectory():
                build_dump(cache, args.agents, messages, dump)
            print(f"dump built in {time.monotonic() - began:.0f} s: {dump}", flush=True)
        result = rehearse_once(cache, dump, args.to)
        results[messages] = result
        print(f"{args.agents} agents, {result['messages']} messages -> {args.to}: {result['seconds']:.0f} s "
              f"(verdict {'intact' if result['ok'] else 'NOT intact'}), peak RSS {result['peak_rss_mib']:.0f} MiB; "
              f"phases {json.dumps({k: round(v) for k, v in result['timings'].items()})}", flush=True)
    if len(results) == 2:
        small, big = results[sizes[0]], results[sizes[1]]
        print(f"memory: {small['peak_rss_mib']:.0f} MiB at {small['messages']} messages, {big['peak_rss_mib']:.0f} MiB "
              f"at {big['messages']} messages")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
