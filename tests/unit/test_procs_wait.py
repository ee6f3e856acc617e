"""procs.wait_until and the log pump: an exited process ends the wait at once, with its last
lines; a probe's own ProvisioningError is not taken for "not yet"; lines are time-stamped."""

from __future__ import annotations

import re
import sys
import time

import httpx
import pytest

from pytest_letta_compat.errors import StartTimedOut, StoppedDuringStart
from pytest_letta_compat.provision.procs import ManagedProcess, wait_until


def _process(tmp_path, script: str) -> ManagedProcess:
    return ManagedProcess("child", [sys.executable, "-c", script], log_path=tmp_path / "child.log",
                          env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path).start()


def test_a_process_that_exits_ends_the_wait_with_its_exit_code_and_last_lines(tmp_path):
    proc = _process(tmp_path, "import sys; print('FATAL: cannot reach the database', flush=True); sys.exit(3)")
    started = time.monotonic()
    with pytest.raises(StoppedDuringStart) as failed:
        wait_until("the child to answer", lambda: httpx.get("http://127.0.0.1:9/", timeout=0.2).status_code == 200,
                   timeout=600, process=proc, interval=0.05)
    message = str(failed.value)
    assert "child exited with code 3" in message and "Timed out" not in message
    assert "FATAL: cannot reach the database" in message  # the pump had written the last line
    assert time.monotonic() - started < 600
    proc.stop()


def test_a_probe_raising_our_own_error_ends_the_wait_at_once(tmp_path):
    calls = []

    def probe() -> bool:
        calls.append(1)
        raise StoppedDuringStart("The Letta container exited with code 1 before it became healthy.")

    with pytest.raises(StoppedDuringStart, match="exited with code 1"):
        wait_until("a container", probe, timeout=600, interval=0.01)
    assert len(calls) == 1


def test_connection_errors_mean_not_yet_and_are_named_on_timeout():
    calls = []

    def probe() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused")
        return True

    assert wait_until("a server", probe, timeout=60, interval=0.01) >= 0
    assert len(calls) == 3

    def refused() -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(StartTimedOut, match=r"Timed out after 0 s waiting for a port\. The last probe failed "
                                                r"with: ConnectionRefusedError"):
        wait_until("a port", refused, timeout=0.1, interval=0.01)


def test_a_bug_in_a_probe_is_not_retried_until_the_timeout():
    with pytest.raises(KeyError):
        wait_until("a server", lambda: {}["missing"], timeout=600, interval=0.01)


def test_the_pump_stamps_every_line_with_the_time_it_arrived(tmp_path):
    proc = _process(tmp_path, "print('one'); print('two', end='')")
    proc.popen.wait(30)
    proc.stop()
    lines = (tmp_path / "child.log").read_text().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z -- child started \(pid \d+\)", lines[0])
    assert [re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", line) for line in lines[1:3]] == ["one", "two"]
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line) for line in lines[1:3])
    assert lines[3].endswith("-- child exited with code 0")
