"""Letta's 60 s connect stall (issue #26, docs/internals.md "Known Letta bug"): its cause, shown
deterministically with the libraries a real Letta install ships, and our fake LLM's default that
takes the cause away. If the fake LLM went back to keeping connections alive, the native runs
would stall again on a good upgrade and the gate would say "do not merge"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pytest_letta_compat.cache import cache_root
from pytest_letta_compat.plugin.fixtures import cache_dir_option
from pytest_letta_compat.provision.fake_llm import FakeLLM
from pytest_letta_compat.provision.install import ensure_server

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "repro_stall_mechanism.py"
VERSION = "0.16.2"  # in matrices/ci.toml: installed by the native job anyway


@pytest.fixture(scope="module")
def letta_python(pytestconfig) -> str:
    return str(ensure_server(VERSION, cache_root(cache_dir_option(pytestconfig))).python)


def mechanism(letta_python: str, fake: FakeLLM) -> dict:
    done = subprocess.run([letta_python, str(SCRIPT), fake.base_url, "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_kept_alive_connection_of_a_dropped_openai_client_stalls_the_next_connect(letta_python):
    with FakeLLM(keep_alive=True) as fake:
        assert mechanism(letta_python, fake)["result"] == "stalled"


def test_our_fake_llm_closes_its_connections_so_nothing_stalls(letta_python):
    with FakeLLM() as fake:
        assert mechanism(letta_python, fake)["result"] == "connected"
