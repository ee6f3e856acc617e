"""The PostgreSQL the plugin starts never outlives pytest: normal end, Ctrl-C, or SIGKILL.

Each inner run starts only the embedded PostgreSQL (letta_backend, about a second), no Letta server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOLD_POSTGRES = """
    import json, os, time
    from pathlib import Path

    def test_hold_postgres(letta_backend):
        cluster = letta_backend.cluster
        pid = cluster.process.pid
        started = Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[19]
        info = {{"pid": pid, "started": started, "base_dir": str(cluster.base_dir)}}
        Path("info.tmp").write_text(json.dumps(info))
        os.replace("info.tmp", "info.json")
        time.sleep({sleep})
"""


def _alive(pid: int, started: str) -> bool:
    """Whether the process with this pid and start time still runs (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in "ZX" and fields[19] == started


def assert_gone_within(pid: int, started: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid, started):
        assert time.monotonic() < deadline, f"PostgreSQL (pid {pid}) still runs {seconds} s later"
        time.sleep(0.1)


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester):
    """Start an inner pytest that holds PostgreSQL; yields (process, postgres pid, start time, base_dir)."""
    procs: list[subprocess.Popen] = []
    infos: list[dict] = []

    def start() -> tuple[subprocess.Popen, int, str, Path]:
        pytester.makepyfile(test_hold=HOLD_POSTGRES.format(sleep=120))
        log = open(pytester.path / "inner.log", "wb")
        proc = pytester.popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={pytester.path / 'bt'}",
             f"--letta-cache-dir={pytester.path / 'cache'}", "test_hold.py"],
            stdout=log, stderr=subprocess.STDOUT,
            # an outer run started in the background may ignore SIGINT; the inner one must not
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        log.close()
        procs.append(proc)
        info_file = pytester.path / "info.json"
        deadline = time.monotonic() + 60
        while not info_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("inner pytest never started PostgreSQL:\n" + (pytester.path / "inner.log").read_text())
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        infos.append(info)
        assert _alive(info["pid"], info["started"]), "PostgreSQL is not running"
        return proc, info["pid"], info["started"], Path(info["base_dir"])

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for info in infos:
        if _alive(info["pid"], info["started"]):
            os.kill(info["pid"], signal.SIGKILL)  # the test failed: do not leak the server
        shutil.rmtree(info["base_dir"], ignore_errors=True)  # a SIGKILLed run cannot remove it


def test_postgres_stops_and_its_directory_is_removed_when_the_run_ends(pytester):
    pytester.makepyfile(test_hold=HOLD_POSTGRES.format(sleep=0))
    result = pytester.runpytest_subprocess(f"--letta-cache-dir={pytester.path / 'cache'}", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["PostgreSQL ready in * s"])
    info = json.loads((pytester.path / "info.json").read_text())
    assert_gone_within(info["pid"], info["started"], seconds=5)
    assert not Path(info["base_dir"]).exists()


def test_postgres_dies_when_pytest_is_sigkilled(inner_pytest):
    proc, pid, started, _ = inner_pytest()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert_gone_within(pid, started, seconds=15)


def test_ctrl_c_stops_pytest_and_postgres_and_removes_the_cluster(inner_pytest, pytester):
    proc, pid, started, base_dir = inner_pytest()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == pytest.ExitCode.INTERRUPTED, (pytester.path / "inner.log").read_text()
    assert_gone_within(pid, started, seconds=15)
    assert not base_dir.exists()
    assert "KeyboardInterrupt" in (pytester.path / "inner.log").read_text()
