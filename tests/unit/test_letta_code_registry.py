"""Letta Code released after the shipped release table (issue #21): a release PyPI or npm
publishes is accepted everywhere, 99.0.0 stays refused, an unreachable or garbled registry
leaves the table in charge and says so, and answers are cached. The registries here are a
local stand-in speaking their JSON APIs; no test reaches the real ones."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_letta_compat import letta_code_registry as registry
from pytest_letta_compat import versions_letta_code as lc
from pytest_letta_compat.cli.main import main
from pytest_letta_compat.matrix.model import load_matrix

NEWER = "0.34.12"  # in the real table; the fixture's table ends before it


class Registry(BaseHTTPRequestHandler):
    pypi: dict = {}
    npm: dict = {}
    garbled = False
    asked: list[str] = []

    def do_GET(self):  # noqa: N802
        Registry.asked.append(self.path)
        if self.path == "/pypi/letta/json":
            body = {"releases": Registry.pypi}
        elif self.path.startswith("/@letta-ai"):
            body = {"versions": Registry.npm}
        else:
            self.send_error(404)
            return
        data = b"<html>mirror says hello</html>" if Registry.garbled else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """A registry that publishes the table's releases and NEWER; a table that ends before NEWER."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(registry.PYPI_URL_ENV, url)
    monkeypatch.setenv(registry.NPM_URL_ENV, url)
    monkeypatch.setenv("LETTA_COMPAT_CACHE", str(tmp_path / "cache"))
    table = dict(lc.release_table())
    table["releases"] = [r for r in table["releases"] if r["version"] not in ("0.34.11", NEWER)]
    monkeypatch.setattr(lc, "release_table", lambda: table)
    monkeypatch.setattr(lc, "_asked", [])
    lc.releases.cache_clear()
    Registry.pypi = {"0.34.10": [{"filename": "x.whl", "yanked": False}], "0.34.11": [{"yanked": False}],
                     NEWER: [{"filename": "y.whl", "yanked": False}], "0.34.13": [{"yanked": True}],
                     "0.16.8": [{"yanked": False}]}
    Registry.npm = {"0.25.9": {}, "0.31.0": {}}
    Registry.garbled, Registry.asked = False, []
    yield url
    server.shutdown()
    lc.releases.cache_clear()


def test_a_release_newer_than_the_table_is_accepted_and_99_stays_refused(stand_in):
    assert lc.release(NEWER) is None and lc.newest() != NEWER  # the table ends before it
    assert lc.is_known(NEWER) and lc.is_known("0.34.11")
    assert not lc.is_known("99.0.0")
    assert not lc.is_known("0.34.13")  # yanked everywhere it was published
    assert not lc.is_known("0.16.8")  # PyPI's `letta` below 0.32.13 is the server, not Letta Code
    assert "neither in the release table nor published on PyPI or npm" in lc.refusal("99.0.0")
    assert f"published after it (0.34.11, {NEWER})" in lc.describe_allowed()


def test_the_matrix_and_the_gate_take_the_newer_release(stand_in, tmp_path):
    from pytest_letta_compat.report.letta_code_gate import LettaCodePin, letta_code_bump

    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "m"\n[[server]]\nversion = "0.16.8"\n[[letta_code]]\nversion = "{NEWER}"\n')
    assert [e.version for e in load_matrix(matrix).letta_code] == [NEWER]
    bump = letta_code_bump(tmp_path / "no-repo.yml", "HEAD~1", "0.34.10", NEWER)
    assert bump == (LettaCodePin("0.34.10", "--letta-code-from"), LettaCodePin(NEWER, "--letta-code-to"))


def test_advise_says_a_newer_release_is_not_measured_yet_and_how_to_measure_it(stand_in, capsys):
    code = main(["advise", "--server", "0.16.8", "--letta-code", NEWER])
    out = capsys.readouterr().out
    assert code == 1
    assert f"Letta Code {NEWER} was published after this package's tables: not measured yet" in out
    assert f"letta-compat advise --server 0.16.8 --letta-code {NEWER} --measure" in out
    assert "matrices/" not in out


def test_answers_are_cached_and_not_asked_again(stand_in):
    assert lc.is_known(NEWER)
    asked = len(Registry.asked)
    assert asked == 2  # PyPI and npm, once each
    again = registry.published()
    assert NEWER in again.versions and again.offline is None
    assert len(Registry.asked) == asked


def test_an_unreachable_registry_leaves_the_table_in_charge_and_says_so(stand_in, monkeypatch):
    monkeypatch.setenv(registry.PYPI_URL_ENV, "http://127.0.0.1:9")
    monkeypatch.setenv(registry.NPM_URL_ENV, "http://127.0.0.1:9")
    assert not lc.is_known(NEWER)
    assert lc.is_known("0.34.10")  # the table still counts
    assert "the registries could not be asked" in lc.refusal(NEWER)
    assert "only the table counts" in lc.refusal(NEWER)


def test_a_garbled_answer_counts_as_unreachable(stand_in):
    Registry.garbled = True
    answer = registry.published()
    assert answer.versions == frozenset() and "did not answer: JSONDecodeError" in answer.offline


def test_advise_measures_a_newer_release_on_the_spot(stand_in, monkeypatch, capsys):
    """--measure runs the shipped letta_code checks on a matrix of the server and the release
    (pytest stands in here: the real run is in tests/tools/test_wheel_init.py)."""
    from pytest_letta_compat.cli import advise

    ran = {}

    def fake_run_suite(matrix_text, *, name, checks, report, **_):
        ran.update(matrix=matrix_text, checks=checks)
        report.write_text(json.dumps({"tests": [
            {"nodeid": f"letta-suite/test_letta_code.py::test_conversation_resumes_by_id[x-{NEWER}]",
             "row": "server-0.16.8", "column": f"letta-code-{NEWER}", "outcome": "passed", "message": ""}]}))
        return 0

    monkeypatch.setattr(advise, "run_suite", fake_run_suite)
    assert main(["advise", "--server", "0.16.8", "--letta-code", NEWER, "--measure"]) == 0
    out = capsys.readouterr().out
    assert f"Letta Code {NEWER} on server 0.16.8, measured now: works" in out
    assert ran["checks"] == ("letta_code",)
    assert f'version = "{NEWER}"' in ran["matrix"] and 'version = "0.16.8"' in ran["matrix"]


def test_advise_on_an_0_11_server_says_to_move_the_server_first(capsys):
    assert main(["advise", "--server", "0.11.3", "--letta-code", "0.25.9"]) == 1
    out = capsys.readouterr().out
    assert "does not work" in out and "Move the server to 0.12 or newer first" in out
    assert "declared" not in out and "floor" not in out
