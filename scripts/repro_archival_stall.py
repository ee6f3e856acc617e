#!/usr/bin/env python3
"""Reproduce Letta's 60 s stall after an agent's first archival insert (issue #13).

Each run starts a fresh stack with the project's own backend (a new PostgreSQL and one Letta
server on a fresh copy of the version's template, the fake LLM behind it), creates an agent,
inserts one archival passage, then sends one message, timing both requests (plain httpx: no
SDK retry hides a 500). One JSON line per run on stdout, then a summary line:

    .venv/bin/python scripts/repro_archival_stall.py --backend native --version 0.16.2 --runs 4
    {"backend": "native", "version": "0.16.2", "run": 1, "archival_s": 0.77, "message_s": 62.14, "status": "stall-500"}

status: "ok" (both requests answered 2xx in under --stall-after seconds), "stall-<code>" (the
message took longer: <code> is its HTTP status, "timeout" if none came), "archival-stall-<code>"
(the archival insert itself did), "error-<code>" (a fast non-2xx answer).

Unless --no-evidence is given, a request still pending after --evidence-after seconds makes the
script record, while it waits, what shows the stall: the Letta process's TCP sockets to
PostgreSQL with their fd numbers and queues, the fds its epoll instances watch (from
/proc/<pid>/fdinfo; read inside the container with `docker exec` on the docker backend), `ss`
in the server's network namespace, and pg_stat_activity. It goes to <workdir>/run-<n>/.

Progress goes to stderr. Variants (one difference at a time, native backend; docs/internals.md has the table):
--llm-keep-alive (the fake LLM keeps connections alive, as a real endpoint does: the stall's
trigger), --no-redis, --sslmode prefer (the DSN without our sslmode=disable, as the docker
backend passes it), --letta-env KEY=VALUE (e.g. LETTA_DISABLE_SQLALCHEMY_POOLING=false).

Heavy: wrap it in `flock /tmp/letta-heavy.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_letta_compat.backends import make_backend  # noqa: E402
from pytest_letta_compat.cache import cache_root  # noqa: E402
from pytest_letta_compat.matrix.model import PostgresSpec  # noqa: E402
from pytest_letta_compat.provision import server as server_process  # noqa: E402
from pytest_letta_compat.provision.fake_llm import FakeLLM  # noqa: E402
from pytest_letta_compat.rest.agents import create_agent, send_message  # noqa: E402

# Runs inside the Letta container (docker exec) or on the host (native): argv = [pid or "", pg port].
# Lists the Letta process's TCP sockets to PostgreSQL and whether each is in one of its epoll sets.
PROBE = r'''
import json, os, sys
pid, pg_port = sys.argv[1], int(sys.argv[2])
if not pid:
    for p in sorted((d for d in os.listdir("/proc") if d.isdigit()), key=int):
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"server" in argv and any(a.endswith(b"letta") for a in argv):
            pid = p
            break
    else:
        pid = "1"  # the container's first process: the official entrypoint execs `letta server`
STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
          "0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "09": "LAST_ACK"}
def addr(h):
    ip, port = h.split(":")
    if len(ip) == 8:
        ip = ".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return f"{ip}:{int(port, 16)}"
sockets = {}
for table in ("tcp", "tcp6"):
    try:
        lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        tx, rx = f[4].split(":")
        sockets[f[9]] = {"local": addr(f[1]), "remote": addr(f[2]), "state": STATES.get(f[3], f[3]),
                         "tx_queue": int(tx, 16), "rx_queue": int(rx, 16)}
fds, epolls = {}, {}
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        fds[int(fd)] = target[8:-1]
    elif target == "anon_inode:[eventpoll]":
        watched = {}
        for line in open(f"/proc/{pid}/fdinfo/{fd}").read().splitlines():
            if line.startswith("tfd:"):
                parts = line.split()
                watched[int(parts[1])] = parts[3]  # fd -> event mask (hex)
        epolls[int(fd)] = watched
to_pg = []
for fd, inode in sorted(fds.items()):
    s = sockets.get(inode)
    if s and int(s["remote"].rsplit(":", 1)[1]) == pg_port:
        to_pg.append({"fd": fd, **s, "in_epoll": {str(e): w.get(fd) for e, w in epolls.items() if fd in w}})
cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
print(json.dumps({"pid": int(pid), "cmdline": cmd, "sockets_to_postgres": to_pg,
                  "epoll_fds": {str(e): sorted(w) for e, w in epolls.items()}}, indent=1))
'''

PG_ACTIVITY = """SELECT pid, client_addr::text, client_port, backend_type, state, wait_event_type, wait_event,
       now() - backend_start AS age, left(query, 80) AS query
FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL ORDER BY backend_start"""


def log(msg: str) -> None:
    print(f"[repro] {msg}", file=sys.stderr, flush=True)


class Evidence:
    """What the stalled server looks like, taken while a request is pending."""

    def __init__(self, backend, stack, outdir: Path):
        self.backend, self.stack, self.outdir = backend, stack, outdir

    def _run(self, cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return done.stdout + done.stderr
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{cmd[0]}: {exc}\n"

    def probe(self) -> str:
        if self.backend.name == "docker":
            code, out = self.stack.container.exec_run(
                ["sh", "-c", 'exec "$(command -v python3 || command -v python)" -c "$0" "$@"', PROBE, "", "5432"])
            return out.decode(errors="replace") + (f"\n(exit {code})\n" if code else "")
        port = self.backend.database_server().port
        return self._run([sys.executable, "-c", PROBE, str(self.stack.pid), str(port)])

    def ss(self) -> str:
        if self.backend.name == "docker":  # the container's network namespace, seen from the host
            out = ""
            for name, pid in (("letta", self.stack.pid), ("postgres", self._pg_pid())):
                out += f"## ss -tnpi in the {name} container's network namespace (host pid {pid})\n"
                out += self._run(["nsenter", "-t", str(pid), "-n", "ss", "-tnpi"]) if pid else "(no pid)\n"
            return out
        port = self.backend.database_server().port
        return self._run(["ss", "-tnpi", f"( dport = :{port} or sport = :{port} )"])

    def _pg_pid(self) -> int | None:
        container = self.backend.database_server().container
        container.reload()
        return container.attrs["State"].get("Pid") or None

    def pg_activity(self) -> str:
        try:
            with self.stack.connect() as conn:
                rows = conn.execute(PG_ACTIVITY).fetchall()
                total = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0]
                limit = conn.execute("SHOW max_connections").fetchone()[0]
                locks = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - evidence is best effort
            return f"pg_stat_activity: {type(exc).__name__}: {exc}\n"
        lines = [f"{total} of {limit} connections; {locks} lock waits"]
        lines += ["\t".join(str(v) for v in row) for row in rows]
        return "\n".join(lines) + "\n"

    def take(self, what: str, pending_for: float) -> None:
        self.outdir.mkdir(parents=True, exist_ok=True)
        stamp = f"{what}-{pending_for:.0f}s"
        (self.outdir / f"{stamp}-probe.json").write_text(self.probe())
        (self.outdir / f"{stamp}-ss.txt").write_text(self.ss())
        (self.outdir / f"{stamp}-pg_stat_activity.txt").write_text(self.pg_activity())
        log(f"evidence for the pending {what} request ({pending_for:.0f} s) in {self.outdir}/{stamp}-*")


def timed(what: str, call, evidence: Evidence | None, after: float) -> tuple[float, str]:
    """Run ``call``; returns (seconds, HTTP status or "timeout"). Takes evidence once if the
    request is still pending after ``after`` seconds."""
    done = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        if not done.wait(after) and evidence is not None:
            try:
                evidence.take(what, time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 - never let evidence break the run
                log(f"evidence for {what} failed: {type(exc).__name__}: {exc}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        call()
        status = "200"
    except httpx.HTTPStatusError as exc:
        status = str(exc.response.status_code)
    except httpx.TimeoutException:
        status = "timeout"
    finally:
        done.set()
        elapsed = time.monotonic() - started
    watcher.join()
    return elapsed, status


def one_run(args, n: int, llm: FakeLLM, workdir: Path) -> dict:
    spec = PostgresSpec(version=args.postgres, image=args.postgres_image)
    backend = make_backend(args.backend, postgres=spec, cache=cache_root(args.cache_dir), workdir=workdir / f"stack-{n}",
                           llm_env=llm.server_env(), start_timeout=args.start_timeout)
    row = {"backend": args.backend, "version": args.version, "run": n, "archival_s": None, "message_s": None,
           "status": "error-setup"}
    try:
        backend.start()
        stack = backend.start_server(args.version)
        log(f"run {n}: Letta {stack.version} healthy at {stack.url} ({getattr(stack, 'image', 'native install')}, "
            f"log {stack.log_path})")
        evidence = Evidence(backend, stack, workdir / f"run-{n}") if args.evidence else None
        with stack.client(timeout=args.timeout) as client:
            agent = create_agent(client, f"repro-archival-{uuid.uuid4().hex[:8]}", llm.base_url)

            def archival() -> None:
                client.post(f"/v1/agents/{agent['id']}/archival-memory",
                            json={"text": "an archival passage"}).raise_for_status()

            a_s, a_status = timed("archival", archival, evidence, args.evidence_after)
            m_s, m_status = timed("message", lambda: send_message(client, agent["id"], "hello after archival"),
                                  evidence, args.evidence_after)
        row.update(archival_s=round(a_s, 2), message_s=round(m_s, 2))
        if a_s >= args.stall_after or a_status == "timeout":
            row["status"] = f"archival-stall-{a_status}"
        elif m_s >= args.stall_after or m_status == "timeout":
            row["status"] = f"stall-{m_status}"
        elif a_status != "200" or m_status != "200":
            row["status"] = f"error-{a_status if a_status != '200' else m_status}"
        else:
            row["status"] = "ok"
        if row["status"] != "ok":
            (workdir / f"run-{n}").mkdir(parents=True, exist_ok=True)
            (workdir / f"run-{n}" / "letta-server-tail.log").write_text(stack.log_tail(200))
    except Exception as exc:  # noqa: BLE001 - one failed run is a result, not the end
        log(f"run {n} failed: {type(exc).__name__}: {str(exc)[:2000]}")
    finally:
        if args.backend == "docker":
            row_images = dict(backend.images)
            log(f"run {n}: images {row_images}")
        backend.cleanup()
    return row


def apply_variant(args) -> None:
    """Change one thing in how the native backend runs Letta (the bisect of issue #26)."""
    extra = dict(kv.split("=", 1) for kv in args.letta_env)
    if not (extra or args.no_redis or args.sslmode != "disable"):
        return
    if args.backend != "native":
        raise SystemExit("--no-redis, --sslmode and --letta-env change the native backend only")
    base = server_process.LettaServerProcess._env

    def env(self) -> dict[str, str]:
        out = base(self)
        if args.no_redis:
            out.pop("LETTA_REDIS_HOST", None)
            out.pop("LETTA_REDIS_PORT", None)
        if args.sslmode == "prefer":
            out["LETTA_PG_URI"] = out["LETTA_PG_URI"].replace("?sslmode=disable", "").replace("&sslmode=disable", "")
        return {**out, **extra}

    server_process.LettaServerProcess._env = env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["docker", "native"], default="docker")
    ap.add_argument("--version", default="0.16.2", help="Letta server release (default 0.16.2)")
    ap.add_argument("--runs", type=int, default=4, help="fresh stacks to try (default 4)")
    ap.add_argument("--postgres", type=int, default=16, help="embedded PostgreSQL major (native; default 16)")
    ap.add_argument("--postgres-image", default="pgvector/pgvector:pg15", help="docker backend's PostgreSQL image")
    ap.add_argument("--cache-dir", help="the project's cache (default ~/.cache/pytest-letta-compat)")
    ap.add_argument("--workdir", type=Path, help="logs and evidence (default: a new /tmp/repro-archival-* dir)")
    ap.add_argument("--start-timeout", type=float, default=600)
    ap.add_argument("--timeout", type=float, default=180, help="per-request timeout, s (default 180)")
    ap.add_argument("--stall-after", type=float, default=30, help="a request this slow is a stall (default 30 s)")
    ap.add_argument("--evidence-after", type=float, default=20,
                    help="take evidence of a request pending this long (default 20 s)")
    ap.add_argument("--no-evidence", dest="evidence", action="store_false")
    ap.add_argument("--llm-keep-alive", action="store_true",
                    help="the fake LLM keeps connections alive (a real endpoint does; our default closes them)")
    ap.add_argument("--no-redis", action="store_true", help="start Letta without Redis (native)")
    ap.add_argument("--sslmode", choices=["disable", "prefer"], default="disable",
                    help="prefer: the DSN without our sslmode=disable, as the docker backend passes it (native)")
    ap.add_argument("--letta-env", action="append", default=[], metavar="KEY=VALUE",
                    help="one more environment variable for Letta (native), e.g. LETTA_DISABLE_SQLALCHEMY_POOLING=false")
    args = ap.parse_args(argv)
    apply_variant(args)
    if args.backend == "docker" and not shutil.which("nsenter"):
        log("nsenter is missing: the evidence will lack ss output")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="repro-archival-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"logs and evidence in {workdir}")
    rows = []
    with FakeLLM(log_path=workdir / "fake-llm.log", keep_alive=args.llm_keep_alive) as llm:
        for n in range(1, args.runs + 1):
            row = one_run(args, n, llm, workdir)
            rows.append(row)
            print(json.dumps(row), flush=True)
    stalls = [r for r in rows if "stall" in r["status"]]
    stalled_s = [r["message_s"] if r["status"].startswith("stall") else r["archival_s"] for r in stalls]
    variant = {"llm_keep_alive": args.llm_keep_alive, "no_redis": args.no_redis, "sslmode": args.sslmode,
               "letta_env": args.letta_env}
    summary = {"summary": True, "backend": args.backend, "version": args.version, "variant": variant, "runs": len(rows),
               "stalls": len(stalls), "ok": sum(r["status"] == "ok" for r in rows),
               "failed_setup": sum(r["status"] == "error-setup" for r in rows),
               "stall_s_median": round(statistics.median(stalled_s), 2) if stalled_s else None,
               "statuses": [r["status"] for r in rows], "workdir": str(workdir)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
