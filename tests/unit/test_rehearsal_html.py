"""The rehearsal's HTML report is the grid's page (one skeleton): per agent its verdict on each
path, names escaped, no secret; a grid with rehearsals shows them below the grid and keeps them
through its JSON and a merge of shards."""

from __future__ import annotations

import json

import pytest

from pytest_letta_compat.errors import LettaCompatError, register_secret
from pytest_letta_compat.report.rehearsal import PathResult, RehearsalReport, write_report
from pytest_letta_compat.report.grid import CheckOutcome, Report, load_report, merge_reports
from pytest_letta_compat.report.html import STYLE

ODD = "<script>alert('AI/ML')</script> & Café"
PASSWORD = "pw-never-shown-7f3a"
KEY = "enc-key-never-shown-91bc"


def agent(agent_id: str, name: str, verdict: str, differences=()) -> dict:
    summary = {"name": name, "stored_messages": 131, "tool_env_vars": {"WEATHER_TOKEN": "readable"}}
    return {"id": agent_id, "name": name, "verdict": verdict, "before": summary, "after": summary,
            "differences": list(differences)}


def sample() -> RehearsalReport:
    image = PathResult("image", verdict="changed", migration_notes=[
        "sandbox_environment_variables: 1 record(s) encrypted by Letta's data-encryption migration"],
        agents=[agent("agent-1", ODD, "changed", ["tool_env_vars[WEATHER_TOKEN]: no longer readable"]),
                agent("agent-2", "long-history", "intact")])
    compat = PathResult("letta-compat", fixups=["secrets only in plaintext columns: 1 secret value(s) ... -> repaired"],
                        agents=[agent("agent-1", ODD, "intact"), agent("agent-2", "long-history", "intact")])
    paths = {}
    for result in (image, compat):
        data = result.__dict__ | {"counts": result.counts()}
        data.pop("path")
        paths[result.path] = data
    source = {"where": f"postgresql://letta:{PASSWORD}@db:5432/letta", "described": "5fb8bba2c373, the schema of "
              "Letta 0.11.2, 0.11.3", "agents": 2, "stored_messages": 262, "drift": [], "format": "custom",
              "schema": "letta", "inventory_via": "api 0.11.3"}
    return RehearsalReport(source, targets=[{"version": "0.16.8", "paths": paths, "letta_code": [
        {"version": "0.34.12", "verdict": "works", "evidence": f"resumed {ODD} (agent-1): turn answered"}]}])


def test_every_written_report_names_the_backend_it_was_rehearsed_on(tmp_path):
    report = sample()
    report.backend = "docker"
    for written in write_report(report, tmp_path / "rehearsal"):
        text = written.read_text()
        assert ('"backend": "docker"' if written.suffix == ".json" else "on the docker backend") in text, written.name


def test_the_rehearsal_page_shows_each_agent_s_verdict_escaped_and_no_secret(tmp_path):
    register_secret(KEY)
    report = sample()
    report.targets[0]["paths"]["image"]["agents"][0]["differences"].append(f"value {KEY} leaked")
    (written,) = write_report(report, tmp_path / "rehearsal.html")
    page = written.read_text()
    assert STYLE in page  # the grid report's skeleton and stylesheet
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;AI/ML&#x27;)&lt;/script&gt; &amp; Café" in page
    table = page.split('id="rehearsal-agents-0.16.8"')[1].split("</table>")[0]
    odd_row = next(row for row in table.split("<tr>") if "Café" in row)
    assert ">changed</td>" in odd_row and ">intact</td>" in odd_row  # image path, letta-compat path
    assert "long-history" in table
    assert "0.34.12" in page and ">works</td>" in page
    assert PASSWORD not in page and KEY not in page


def test_a_grid_with_a_rehearsal_shows_it_on_the_same_page_and_keeps_it_through_json_and_merges(tmp_path):
    data = sample().to_json() | {"entry": "rehearsal-letta-to-0.16.8"}
    grid = Report(matrix="m.toml", rehearsals=[data], outcomes=[
        CheckOutcome("t::a[rehearsal-letta-to-0.16.8]", "rehearsal-letta-to-0.16.8", "upgrade", "passed")])
    page = grid.to_html()
    assert page.count("<html") == 1 and '<table id="grid">' in page and 'id="rehearsal-agents-0.16.8"' in page
    assert "Café" in page
    for written in grid.write(tmp_path / "grid"):  # .json, .md, .html: the DSN's password masked in each
        assert PASSWORD not in written.read_text()
    again = load_report(tmp_path / "grid.json")
    assert again.rehearsals[0]["entry"] == "rehearsal-letta-to-0.16.8"
    merged = merge_reports([again, load_report(tmp_path / "grid.json")])
    assert len(merged.rehearsals) == 1 and json.dumps(merged.rehearsals[0]["targets"])


def test_a_json_report_with_a_broken_rehearsal_is_one_clear_error(tmp_path):
    broken = Report(matrix="m.toml", rehearsals=[{"source": {}, "targets": [{"version": "0.16.8"}]}]).to_json()
    (tmp_path / "r.json").write_text(json.dumps(broken))
    with pytest.raises(LettaCompatError, match=r"not a letta-compat JSON report \(rehearsals\[0\] is not a rehearsal"):
        load_report(tmp_path / "r.json")
