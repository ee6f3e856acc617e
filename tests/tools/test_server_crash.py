"""A Letta server that dies at start fails at once, naming its exit code, with its last log
lines, long before the start timeout (#13 item 3: the probe's error used to be swallowed)."""

from __future__ import annotations

import time

import pytest

from pytest_letta_compat.cache import cache_root
from pytest_letta_compat.errors import ProvisioningError
from pytest_letta_compat.provision.install import ensure_server
from pytest_letta_compat.provision.server import LettaServerProcess

TIMEOUT = 600


@pytest.mark.parametrize("version", ["0.16.8"])
def test_a_server_that_cannot_reach_its_database_fails_with_its_exit_and_log(version, pytestconfig, tmp_path):
    install = ensure_server(version, cache_root(pytestconfig.getoption("--letta-cache-dir")))
    # nothing listens on port 9: Letta's start-up (provider sync) cannot reach PostgreSQL and exits
    server = LettaServerProcess(install, "postgresql://letta:not-a-secret@127.0.0.1:9/letta", tmp_path,
                                start_timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ProvisioningError) as failed:
        server.start()
    waited = time.monotonic() - started
    message = str(failed.value)
    assert f"Letta server {version} exited with code" in message, message
    assert "Timed out" not in message
    assert "Last lines of its log" in message and str(server.log_path) in message
    assert "Application startup failed" in message  # uvicorn's last words, from the log
    assert waited < TIMEOUT
    assert not server.process.running()
