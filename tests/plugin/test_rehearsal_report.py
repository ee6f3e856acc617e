"""A run with [[rehearsal]] entries and --letta-report X.html: the rehearsal's per-agent verdict
table is in the grid's own page (one HTML document), its row in the grid, and no secret in any
file. The rehearsal itself is stood in for (its report is data; tests/tools rehearse for real)."""

from __future__ import annotations

import json

MATRIX = """
[[rehearsal]]
dump = "nightly.dump"
to = ["0.16.8"]
"""

CONFTEST = """
import pytest

from pytest_letta_compat.errors import register_secret

KEY = "stored-key-never-shown-5d1e"


class StandIn:
    report = {"verdict": "not intact",
              "source": {"where": "nightly.dump", "described": "5fb8bba2c373, the schema of Letta 0.11.3",
                         "agents": 2, "stored_messages": 140, "drift": []},
              "targets": [{"version": "0.16.8", "paths": {
                  name: {"verdict": verdict, "counts": {verdict: 2}, "migration_notes": [], "fixups": [],
                         "error": None, "schema_problems": [], "server_differences": [], "exchange": [],
                         "not_checked": [],
                         "agents": [{"id": "agent-1", "name": "AI/ML <Expert>", "verdict": verdict,
                                     "before": {"stored_messages": 131}, "after": None,
                                     "differences": [f"tool_env_vars[TOKEN]: value {KEY} differs"]
                                     if verdict != "intact" else []},
                                    {"id": "agent-2", "name": "plain", "verdict": "intact",
                                     "before": {"stored_messages": 9}, "after": None, "differences": []}]}
                  for name, verdict in (("image", "changed"), ("letta-compat", "lost"))}}]}


@pytest.fixture(scope="session")
def letta_rehearsal(letta_rehearsal_entry):
    register_secret(KEY)
    return StandIn()
"""

TESTS = """
import pytest

@pytest.mark.letta_check("upgrade")
def test_every_agent_comes_through(letta_rehearsal, letta_rehearsal_entry):
    assert letta_rehearsal.report["targets"][0]["paths"]["letta-compat"]["verdict"] == "intact"

@pytest.mark.letta_check("upgrade")
def test_schema(letta_rehearsal, letta_rehearsal_entry):
    pass
"""


def test_the_rehearsal_s_agent_table_is_in_the_grid_s_html(pytester, write_matrix):
    (pytester.path / "nightly.dump").write_bytes(b"PGDMP")
    matrix = write_matrix("matrix", MATRIX)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_rehearsal_entries=TESTS)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrix}", "--letta-report=out")
    result.assert_outcomes(passed=1, failed=1)
    page = (pytester.path / "out.html").read_text()
    assert page.count("<html") == 1 and '<table id="grid">' in page
    assert "<th>rehearsal-nightly-to-0.16.8</th>" in page  # the entry's row in the grid
    table = page.split('id="rehearsal-agents-0.16.8"')[1].split("</table>")[0]
    row = next(r for r in table.split("<tr>") if "Expert" in r)
    assert "AI/ML &lt;Expert&gt;" in row and ">changed</td>" in row and ">lost</td>" in row
    assert "<Expert>" not in page
    doc = json.loads((pytester.path / "out.json").read_text())
    assert [r["entry"] for r in doc["rehearsals"]] == ["rehearsal-nightly-to-0.16.8"]  # once, for two tests
    assert doc["grid"]["rehearsal-nightly-to-0.16.8"]["upgrade"] == "failed"
    for name in ("out.html", "out.json", "out.md"):
        assert "stored-key-never-shown-5d1e" not in (pytester.path / name).read_text()
