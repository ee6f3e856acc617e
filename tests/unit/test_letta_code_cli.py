"""Letta Code provisioning and runs with the real CLI: exact versions only, clear install
failures, isolated HOME and environment, and no run that can hang or leave processes."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from pytest_letta_compat.cache import cache_root
from pytest_letta_compat.errors import LettaCompatError, ProvisioningError
from pytest_letta_compat.provision.letta_code import (
    LettaCodeRunner,
    LettaCodeTimeout,
    cli_env,
    ensure_letta_code,
    parse_json_output,
    run_letta_code,
)


@pytest.fixture(scope="module")
def cache() -> Path:
    return cache_root()  # shared with the compat suite: each version installs once per machine


@pytest.fixture(scope="module")
def old_cli(cache):
    return ensure_letta_code("0.15.2", cache)


@pytest.mark.parametrize("version", ["latest", "^0.15.2", "0.25", ">=0.32.13", "0.25.9 "])
def test_only_exact_versions_are_installed(tmp_path, version):
    with pytest.raises(ProvisioningError, match=r"is not an exact release number.*never a range or a tag"):
        ensure_letta_code(version, tmp_path)
    assert not (tmp_path / "letta-code").exists()


def test_a_version_npm_cannot_install_is_an_error_naming_it_and_leaves_nothing(tmp_path, monkeypatch):
    # 0.30.28 pins @letta-ai/trajectory 0.2.0, which the npm registry does not serve; the release
    # table knows (and refuses it first), so pretend it did not to see npm's own failure
    from pytest_letta_compat import versions

    monkeypatch.setattr(versions, "is_known_letta_code", lambda version: True)
    with pytest.raises(ProvisioningError) as failure:
        ensure_letta_code("0.30.28", tmp_path)
    message = str(failure.value)
    assert message.startswith("Letta Code 0.30.28 could not be installed from npm: "
                              "`npm install @letta-ai/letta-code@0.30.28` failed (exit 1)")
    assert "@letta-ai/trajectory" in message
    assert not (tmp_path / "letta-code" / "0.30.28").exists()


def test_an_install_that_outlives_its_timeout_is_stopped_with_an_error(tmp_path):
    with pytest.raises(ProvisioningError, match=r"Letta Code 0\.25\.9 could not be installed: `npm install "
                                                r"@letta-ai/letta-code@0\.25\.9` did not finish within 1 s"):
        ensure_letta_code("0.25.9", tmp_path, timeout=0.01)
    assert not (tmp_path / "letta-code" / "0.25.9").exists()


def test_npm_version_is_cached_and_reports_its_version(cache, old_cli, tmp_path):
    assert (old_cli.source, old_cli.executable) == ("npm", cache / "letta-code/0.15.2/node_modules/.bin/letta")
    assert ensure_letta_code("0.15.2", cache).installed_in == 0.0
    result = run_letta_code(old_cli, ["--version"], base_url="http://127.0.0.1:9", home=tmp_path / "h", cwd=tmp_path / "w")
    assert (result.returncode, result.stdout.strip()) == (0, "0.15.2 (Letta Code)")


def test_pypi_version_runs_on_its_bundled_node(cache, tmp_path):
    install = ensure_letta_code("0.32.18", cache)
    assert (install.source, install.executable) == ("pypi", cache / "letta-code/0.32.18/venv/bin/letta")
    result = run_letta_code(install, ["--version"], base_url="http://127.0.0.1:9", home=tmp_path / "h", cwd=tmp_path / "w")
    assert (result.returncode, result.stdout.strip()) == (0, "0.32.18 (Letta Code)")


def test_each_run_gets_a_home_without_default_agents_and_no_outer_letta_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("LETTA_AGENT_ID", "agent-from-the-outer-shell")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/somewhere/else")
    env = cli_env(tmp_path, "http://127.0.0.1:8283", None)
    assert {k: env[k] for k in ("HOME", "DISABLE_AUTOUPDATER", "LETTA_CODE_TELEM", "LETTA_BASE_URL")} == {
        "HOME": str(tmp_path), "DISABLE_AUTOUPDATER": "1", "LETTA_CODE_TELEM": "0",
        "LETTA_BASE_URL": "http://127.0.0.1:8283"}
    assert not {"LETTA_AGENT_ID", "LETTA_API_KEY", "XDG_CONFIG_HOME"} & env.keys()
    assert cli_env(tmp_path, "http://x", "the-password")["LETTA_API_KEY"] == "the-password"


def test_a_failing_run_returns_its_exit_code_and_output_with_the_key_masked(old_cli, tmp_path):
    runner = LettaCodeRunner(old_cli, base_url="http://127.0.0.1:9", api_key="key-4711-secret", workdir=tmp_path)
    result = runner("-p", "hello", json=True)
    assert result.returncode == 1 and result.json is None
    assert "Failed to connect to Letta server" in result.stdout + result.stderr
    assert result.args == ("-p", "hello", "--output-format", "json") and runner.runs == [result]
    for settings in (".config/letta/settings.json", ".letta/settings.json"):
        assert json.loads((runner.home / settings).read_text())["createDefaultAgents"] is False
    assert "key-4711-secret" not in result.describe()


def test_a_run_against_a_server_that_never_answers_is_stopped_with_everything_it_spawned(old_cli, tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    runner = LettaCodeRunner(old_cli, base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", api_key=None,
                             workdir=tmp_path)
    try:
        with pytest.raises(LettaCodeTimeout, match=r"Letta Code 0\.15\.2 did not finish `letta -p hello` within 5 s") as hung:
            runner("-p", "hello", timeout=5)
    finally:
        silent.close()
        for conn in accepted:
            conn.close()
    assert isinstance(hung.value, LettaCompatError) and hung.value.result.returncode is None
    assert runner.runs == [hung.value.result]
    assert not _processes_in(runner.project), "a process of the stopped run is still alive"


def _processes_in(directory: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == directory:
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_json_output_is_found_after_other_lines():
    assert parse_json_output('{"type": "result"}') == {"type": "result"}
    assert parse_json_output('Cannot auto-populate base tools\n{"type": "result", "result": "hi"}\n') == {
        "type": "result", "result": "hi"}
    assert parse_json_output("Failed to connect to Letta server\n") is None
