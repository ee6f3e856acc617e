"""The compatibility report: grid verdicts, renderings and merging of shards."""

from __future__ import annotations

import json

import pytest

from pytest_letta_compat.errors import LettaCompatError, register_secret
from pytest_letta_compat.report.grid import Report, CheckOutcome, load_report, merge_reports


def outcome(nodeid, row, column, result, message="", log=""):
    return CheckOutcome(nodeid=nodeid, row=row, column=column, outcome=result, message=message, log_excerpt=log)


@pytest.fixture
def report():
    return Report(matrix="matrices/default.toml", outcomes=[
        outcome("t::a[server-0.16.2]", "server-0.16.2", "smoke", "passed"),
        outcome("t::b[server-0.16.2]", "server-0.16.2", "smoke", "failed", "AssertionError: 500", "ERROR column x"),
        outcome("t::c[server-0.11.3]", "server-0.11.3", "api", "xfailed", "declared: 0.11 has no conversations"),
        outcome("t::d[upgrade-0.11.3-to-0.16.2]", "upgrade-0.11.3-to-0.16.2", "upgrade", "passed"),
        outcome("t::e[server-0.16.10]", "server-0.16.10", "letta-code-0.25.9", "skipped", "no node"),
    ])


def test_a_cell_shows_its_worst_outcome_and_rows_sort_by_version(report):
    assert report.rows() == ["server-0.11.3", "server-0.16.2", "server-0.16.10", "upgrade-0.11.3-to-0.16.2"]
    assert report.columns() == ["smoke", "api", "upgrade", "letta-code-0.25.9"]
    grid = report.to_json()["grid"]
    assert grid["server-0.16.2"]["smoke"] == "failed"
    assert grid["server-0.11.3"]["api"] == "xfailed"
    assert grid["server-0.11.3"]["smoke"] is None
    assert report.ok is False


def test_terminal_grid_has_a_line_per_entry(report):
    lines = report.terminal_lines()
    assert lines[0].split() == ["smoke", "api", "upgrade", "letta-code-0.25.9"]
    assert lines[2].split() == ["server-0.16.2", "FAIL", "-", "-", "-"]
    assert lines[1].split() == ["server-0.11.3", "-", "xfail", "-", "-"]


def test_html_links_each_failing_cell_to_its_failure_text_and_log(report):
    page = report.to_html()
    assert '<table id="grid">' in page
    assert '<a href="#f-' in page and "AssertionError: 500" in page and "ERROR column x" in page
    assert "NOT compatible" in page


def test_markdown_lists_failures_for_a_ci_job_summary(report):
    md = report.to_markdown()
    assert "| server-0.16.2 | ❌ fail |" in md
    assert "`t::b[server-0.16.2]`: AssertionError: 500" in md


def test_written_files_mask_secrets_and_round_trip_through_json(tmp_path, report):
    register_secret("hunter2-secret")
    report.outcomes[1].log_excerpt = "password hunter2-secret"
    paths = report.write(tmp_path / "out")
    assert sorted(p.suffix for p in paths) == [".html", ".json", ".md"]
    assert all("hunter2-secret" not in p.read_text() for p in paths)
    again = load_report(tmp_path / "out.json")
    assert again.to_json()["grid"] == report.to_json()["grid"]


def test_merging_shards_unions_entries_and_keeps_the_worse_duplicate(report):
    first = Report(matrix="m.toml", outcomes=report.outcomes[:2])
    second = Report(matrix="m.toml", outcomes=report.outcomes[2:] + [
        outcome("t::a[server-0.16.2]", "server-0.16.2", "smoke", "error", "teardown broke")])
    merged = merge_reports([first, second])
    assert merged.rows() == report.rows()
    assert {o.nodeid: o.outcome for o in merged.outcomes}["t::a[server-0.16.2]"] == "error"


def test_loading_something_that_is_not_a_report_names_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(LettaCompatError, match="x.json: not a letta-compat JSON report"):
        load_report(bad)
