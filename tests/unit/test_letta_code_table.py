"""Issue 14: the Letta Code release table is exact (a version not in it is refused with the
list), npm releases run on a Node.js provisioned from PyPI, the measured table answers
`letta-compat advise`, and the gate reads the Letta Code an operator's repository pins."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pytest_letta_compat import versions_upgrades as vu

from pytest_letta_compat import versions
from pytest_letta_compat import versions_letta_code as lc
from pytest_letta_compat.cache import cache_root
from pytest_letta_compat.cli.main import main
from pytest_letta_compat.errors import ProvisioningError
from pytest_letta_compat.matrix.model import MatrixError, load_matrix
from pytest_letta_compat.provision.fake_llm import FakeLLM
from pytest_letta_compat.provision.fake_llm_replies import REPLY_PREFIX, TOOL_DIRECTIVE
from pytest_letta_compat.provision.letta_code import ensure_letta_code, ensure_node, run_letta_code
from pytest_letta_compat.report.letta_code_gate import letta_code_bump, pinned_letta_code

ROOT = Path(__file__).resolve().parents[2]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- the release table ----------------------------------------------------------------------

def test_the_table_lists_every_release_that_installs_with_its_date():
    table = {r.version: r for r in lc.releases()}
    assert table["0.34.12"].source == "pypi" and table["0.34.12"].released == "2026-10-12"
    assert table["0.32.13"].released == "2026-09-17" and table["0.15.2"].source == "npm"
    assert not table["0.30.28"].installs and "trajectory" in table["0.30.28"].why_not
    pypi = [r.version for r in lc.releases() if r.source == "pypi"]
    assert len(pypi) >= 27 and all(versions.Version(v) >= lc.PYPI_MIN for v in pypi)
    assert lc.newest() == pypi[-1] and versions.is_known_letta_code("0.34.12")
    assert not versions.is_known_letta_code("99.0.0") and not versions.is_known_letta_code("0.32.17")
    assert lc.last_of_each_minor() == ["0.15.2", "0.19.5", "0.21.7", "0.22.4", "0.25.9", "0.32.19", "0.33.8", "0.34.12"]


@pytest.mark.parametrize("version", ["99.0.0", "0.32.17", "0.30.28"])
def test_matrix_check_refuses_a_version_not_in_the_table_with_the_list(tmp_path, version):
    path = tmp_path / "m.toml"
    path.write_text(f'name = "x"\n[[server]]\nversion = "0.16.8"\n[[letta_code]]\nversion = "{version}"\n')
    with pytest.raises(MatrixError) as failure:
        load_matrix(path)
    message = str(failure.value)
    assert f"'{version}', which is not allowed" in message and "0.25.9 (npm)" in message
    assert "0.34.12 (PyPI)" in message and len(message.splitlines()) == 1


def test_a_release_whose_dependencies_are_gone_is_refused_before_installing(tmp_path):
    with pytest.raises(ProvisioningError, match=r"Letta Code 0\.30\.28 \(npm\) is in the release table but does not install: 404 Not Found"):
        ensure_letta_code("0.30.28", tmp_path)
    assert not (tmp_path / "letta-code").exists()


def test_versions_lists_the_letta_code_table(capsys):
    code, out, _ = cli(capsys, "versions", "--letta-code")
    assert code == 0
    assert any(line.split()[:4] == ["0.34.12", "pypi", "2026-10-12", "yes"] for line in out.splitlines())
    assert any(line.startswith("0.30.28") and "NO: 404 Not Found" in line for line in out.splitlines())


# -- Node.js from PyPI ------------------------------------------------------------------------

def test_npm_releases_run_on_node_from_pypi_without_a_system_node(tmp_path):
    node = ensure_node(cache_root())
    assert (node / "node").exists() and node.is_relative_to(cache_root())
    install = ensure_letta_code("0.15.2", cache_root())
    assert install.node_bin == node
    saved = os.environ["PATH"]
    os.environ["PATH"] = str(Path(sys.executable).parent)  # no node, no npm
    try:
        result = run_letta_code(install, ["--version"], base_url="http://127.0.0.1:9", home=tmp_path / "h",
                                cwd=tmp_path / "w")
    finally:
        os.environ["PATH"] = saved
    assert result.returncode == 0 and result.stdout.startswith("0.15.2"), result.describe()


def test_system_node_only_when_asked(monkeypatch):
    monkeypatch.setenv("LETTA_COMPAT_SYSTEM_NODE", "1")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(ProvisioningError, match="LETTA_COMPAT_SYSTEM_NODE=1 asks for the machine's Node.js"):
        ensure_node(cache_root())


# -- the fake LLM asks for a tool when told to ------------------------------------------------

def test_fake_llm_calls_the_scripted_tool_once():
    fake = FakeLLM()
    tools = [{"type": "function", "function": {"name": "Read", "parameters": {"properties": {"file_path": {}}}}}]
    ask = {"name": "Read", "arguments": {"file_path": "/tmp/x"}}
    user = {"role": "user", "content": f"read it {TOOL_DIRECTIVE}{json.dumps(ask)}"}
    text, call, _ = fake.chat_plan({"messages": [user], "tools": tools})
    assert text is None and call["name"] == "Read" and json.loads(call["arguments"]) == {"file_path": "/tmp/x"}
    back = [user, {"role": "assistant", "tool_calls": [{"id": call["id"], "function": {"name": "Read"}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "file text"}]
    text, call, _ = fake.chat_plan({"messages": back, "tools": tools})
    assert call is None and text.startswith(REPLY_PREFIX)


def test_fake_llm_makes_parallel_calls_when_the_script_lists_several():
    """A list in the directive: one reply with every call, each its own id, in the non-stream
    body and in the stream's chunks (index per call), as OpenAI sends parallel tool calls."""
    fake = FakeLLM()
    tools = [{"type": "function", "function": {"name": "launch", "parameters": {"properties": {"target": {}}}}}]
    asks = [{"name": "launch", "arguments": {"target": t}} for t in ("one", "two")]
    body = {"messages": [{"role": "user", "content": f"{TOOL_DIRECTIVE}{json.dumps(asks)}"}], "tools": tools}
    full, chunks = fake.chat_completion(body)
    calls = full["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"target": "one"}, {"target": "two"}]
    assert len({c["id"] for c in calls}) == 2 and full["choices"][0]["finish_reason"] == "tool_calls"
    streamed: dict[int, str] = {}
    for chunk in chunks:
        for delta in (chunk["choices"][0]["delta"].get("tool_calls") or []) if chunk["choices"] else []:
            streamed[delta["index"]] = streamed.get(delta["index"], "") + delta["function"]["arguments"]
    assert {i: json.loads(a) for i, a in streamed.items()} == {0: {"target": "one"}, 1: {"target": "two"}}


# -- the measured table and advise -------------------------------------------------------------

REPORT = {"tests": [
    {"nodeid": "s/test_letta_code.py::test_headless_turn_completes_through_the_server_and_the_fake_llm[x]",
     "row": "server-0.16.4", "column": "letta-code-0.34.12", "outcome": "passed", "message": "", "duration": 2.0},
    {"nodeid": "s/test_letta_code.py::test_startup_warning_on_old_servers_is_recorded[x]", "row": "server-0.16.4",
     "column": "letta-code-0.34.12", "outcome": "passed", "duration": 3.0,
     "message": "works with a warning: Warning: Your Docker image is outdated (v0.16.4)."},
    {"nodeid": "s/test_letta_code.py::test_headless_turn_completes_through_the_server_and_the_fake_llm[y]",
     "row": "server-0.16.8", "column": "letta-code-0.34.12", "outcome": "passed", "message": "", "duration": 2.0},
    {"nodeid": "s/test_letta_code.py::test_tool_call_round_trip_through_letta_code[z]", "row": "server-0.16.4",
     "column": "letta-code-0.15.2", "outcome": "failed", "duration": 1.0,
     "message": "def test...\nE   AssertionError: the Read call never came back\nmore"},
    {"nodeid": "s/test_smoke.py::test_x[server-0.16.4]", "row": "server-0.16.4", "column": "smoke",
     "outcome": "passed", "message": ""},
]}


@pytest.fixture
def measured(monkeypatch):
    table = lc.compat_from_report(REPORT, command="pytest ...", measured="2026-12-01")
    monkeypatch.setattr(lc, "compat_table", lambda: table)
    return table


def test_the_measured_table_has_one_outcome_per_pair(measured):
    outcomes = {(p["server"], p["letta_code"]): p["outcome"] for p in measured["pairs"]}
    assert outcomes == {("0.16.4", "0.34.12"): "works with a warning", ("0.16.8", "0.34.12"): "works",
                        ("0.16.4", "0.15.2"): "fails"}
    failing = lc.measured_pair("0.16.4", "0.15.2")["failing"]
    assert failing == [{"check": "tool round trip", "outcome": "failed",
                        "evidence": "E   AssertionError: the Read call never came back"}]


def test_advise_answers_from_the_measured_table(measured, capsys, monkeypatch):
    monkeypatch.setattr(vu, "upgrade_table", lambda: {"measured": "-", "paths": []})
    code, out, _ = cli(capsys, "advise", "--server", "0.16.4", "--letta-code", "0.34.12")
    assert code == 0 and "Letta Code 0.34.12 on server 0.16.4: works with a warning: Warning: Your Docker" in out
    assert "oldest server Letta Code 0.34.12 was measured working on: 0.16.4" in out and "newest Letta Code for server 0.16.4: 0.34.12" in out
    code, out, _ = cli(capsys, "advise", "--server", "0.16.4", "--letta-code", "0.15.2")
    assert code == 1 and "fails" in out and "failing check: tool round trip (failed): E   AssertionError" in out
    code, out, _ = cli(capsys, "advise", "--server", "0.16.8", "--letta-code", "0.34.5")
    assert code == 0 and "(measured as 0.34.12, the last release of its line)" in out
    code, out, _ = cli(capsys, "advise", "--server", "0.16.4")  # and the server path, not measured here
    assert code == 1 and "Server upgrade 0.16.4 -> 0.16.8:" in out and "not measured yet" in out
    assert "Letta Code 0.15.2" in out and "newest Letta Code for server 0.16.4: 0.34.12" in out


@pytest.mark.parametrize("argv, says", [(["--server", "0.99.0"], "--server '0.99.0' is not a Letta server release"),
                                        (["--server", "0.16.2", "--letta-code", "99.0.0"],
                                         "--letta-code: Letta Code '99.0.0' is neither in the release table nor published on PyPI or npm")])
def test_advise_bad_input_is_one_line_exit_2(measured, capsys, argv, says):
    code, out, err = cli(capsys, "advise", *argv)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_the_shipped_measured_table_names_its_date_and_command():
    table = lc.compat_table()
    assert table is not None, "pytest_letta_compat/data/letta_code_compat.json is missing"
    assert table["measured"] and "letta-code-table.toml" in table["command"]
    assert lc.newest() in table["letta_code"] or any(v.startswith("0.34.") for v in table["letta_code"])


# -- what the operator's repository pins ---------------------------------------------------------

def package_json(version: str) -> str:
    return json.dumps({"name": "ops", "devDependencies": {"@letta-ai/letta-code": version}})


@pytest.fixture
def repo(tmp_path, git):
    git(tmp_path, "init", "-q")
    (tmp_path / "docker-compose.yml").write_text("services:\n  letta:\n    image: letta/letta:0.16.8\n")
    (tmp_path / "package.json").write_text(package_json("0.25.9"))
    (tmp_path / "requirements.txt").write_text("letta==0.16.8  # the server's client, not Letta Code\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "pin")
    return tmp_path


def test_the_gate_reads_a_package_json_bump(repo):
    (repo / "package.json").write_text(package_json("0.34.12"))
    before, after = letta_code_bump(repo / "docker-compose.yml", "HEAD")
    assert (before.version, before.where, after.version, after.where) == ("0.25.9", "package.json", "0.34.12",
                                                                          "package.json")


def test_a_letta_pin_below_0_32_13_is_the_server_and_above_is_letta_code(repo):
    (repo / "package.json").unlink()
    assert pinned_letta_code(repo, None) is None
    (repo / "requirements-dev.txt").write_text("httpx\nletta[extra] == 0.34.12 ; python_version >= '3.11'\n")
    assert pinned_letta_code(repo, None).version == "0.34.12"
    (repo / "requirements-dev.txt").unlink()
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["letta==0.33.8"]\n')
    assert pinned_letta_code(repo, None).where == "pyproject.toml"


def test_an_unchanged_pin_is_no_bump_and_a_range_is_bad_input(repo, capsys):
    assert letta_code_bump(repo / "docker-compose.yml", "HEAD") is None
    (repo / "package.json").write_text(package_json("^0.34.12"))
    code, out, err = cli(capsys, "gate", "--compose", str(repo / "docker-compose.yml"), "--base-ref", "HEAD")
    assert code == 2 and "package.json (devDependencies) pins Letta Code as '^0.34.12'" in err
    (repo / "package.json").write_text(package_json("99.0.0"))
    code, out, err = cli(capsys, "gate", "--compose", str(repo / "docker-compose.yml"), "--base-ref", "HEAD")
    assert code == 2 and "Letta Code '99.0.0' is neither in the release table nor published on PyPI or npm" in err


def test_a_terminal_run_shows_the_screen_text_and_stops(tmp_path):
    from pytest_letta_compat.provision.letta_code import run_letta_code_tty

    install = ensure_letta_code("0.34.12", cache_root())
    screen = run_letta_code_tty(install, ["--version"], base_url="http://127.0.0.1:9", home=tmp_path / "h",
                                cwd=tmp_path / "w", seconds=30)
    assert screen.returncode == 0 and screen.stdout.strip() == "0.34.12 (Letta Code)", screen.describe()
    stopped = run_letta_code_tty(install, [], base_url="http://127.0.0.1:9", home=tmp_path / "h",
                                 cwd=tmp_path / "w", seconds=3)
    assert stopped.duration < 10  # the interactive UI exits (no server at :9) or is stopped: never waited for
