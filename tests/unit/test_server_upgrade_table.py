"""The server-upgrade table: what it measures, how a report becomes its rows, and what
`letta-compat advise --server` says from it (issue #21)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st
from packaging.version import Version

from pytest_letta_compat import versions
from pytest_letta_compat import versions_upgrades as vu
from pytest_letta_compat.cli.main import main

RELEASES = versions.known_server_versions()


def test_every_release_has_its_path_to_the_final_one_and_its_next_hop():
    paths = vu.table_paths()
    assert len(paths) == len(set(paths))
    for v in RELEASES[:-1]:
        assert (v, vu.FINAL) in paths
        nxt = vu.next_head(v)
        if nxt is not None:
            assert (v, nxt) in paths
            assert versions.server_release(nxt).alembic_head != versions.server_release(v).alembic_head
    assert vu.next_head("0.16.7") is None  # 0.16.8 shares its head: nothing further to migrate to
    assert {old for old, _ in paths} == set(RELEASES[:-1])


@given(st.sampled_from(RELEASES), st.sampled_from(RELEASES))
def test_hops_go_one_head_at_a_time_and_end_at_the_target(a, b):
    old, new = sorted((a, b), key=Version)
    steps = vu.hops(old, new)
    if old == new:
        assert steps == []
        return
    assert steps[0][0] == old and steps[-1][1] == new
    for (x, y), (y2, _) in zip(steps, steps[1:]):
        assert y == y2
    for x, y in steps[:-1]:
        assert versions.server_release(x).alembic_head != versions.server_release(y).alembic_head


def _test(row, name, outcome, message="", duration=10.0):
    return {"nodeid": f"letta-suite/test_x.py::{name}[{row}]", "row": row, "column": "upgrade", "outcome": outcome,
            "message": message, "duration": duration}


REPORT = {"tests": [
    _test("upgrade-0.11.3-to-0.16.8", "test_in_place_upgrade_through_the_cli", "passed",
          vu.FIXUP_NOTE + "messages.sequence_id default: missing"),
    _test("upgrade-0.11.3-to-0.16.8", "test_upgraded_database_is_identical_to_a_fresh_one", "passed"),
    _test("upgrade-0.16.7-to-0.16.8", "test_in_place_upgrade_through_the_cli", "passed"),
    _test("upgrade-0.16.7-to-0.16.8", "test_refuses_to_upgrade_without_a_backup", "skipped"),
    _test("upgrade-0.11.0-to-0.11.2", "test_in_place_upgrade_through_the_cli", "error",
          "E   ProvisioningError: Letta server 0.11.0 exited with code 1\nmore"),
    _test("server-0.16.8", "test_health_reports_the_matrix_version", "passed"),
]}


def test_a_report_becomes_rows_with_verdict_fixups_and_evidence():
    table = vu.table_from_report(REPORT, command="cmd", measured="2026-12-04")
    rows = {(r["from"], r["to"]): r for r in table["paths"]}
    assert set(rows) == {("0.11.0", "0.11.2"), ("0.11.3", "0.16.8"), ("0.16.7", "0.16.8")}
    assert rows["0.11.3", "0.16.8"]["verdict"] == vu.WORKS_AFTER_FIXUPS
    assert rows["0.11.3", "0.16.8"]["fixups"] == ["messages.sequence_id default: missing"]
    assert rows["0.11.3", "0.16.8"]["seconds"] == 20.0
    assert rows["0.16.7", "0.16.8"]["verdict"] == vu.WORKS
    failing = rows["0.11.0", "0.11.2"]
    assert failing["verdict"] == vu.FAILS and "exited with code 1" in failing["failing"][0]["evidence"]
    assert table["command"] == "cmd" and table["measured"] == "2026-12-04"


def test_a_path_whose_checks_were_all_skipped_is_not_called_working():
    only_skipped = {"tests": [_test("upgrade-0.16.5-to-0.16.8", "test_in_place_upgrade_through_the_cli", "skipped")]}
    assert vu.table_from_report(only_skipped, command="c", measured="d")["paths"][0]["verdict"] == vu.FAILS


@pytest.fixture
def measured_table(monkeypatch):
    table = vu.table_from_report(REPORT, command="cmd", measured="2026-12-04")
    monkeypatch.setattr(vu, "upgrade_table", lambda: table)
    return table


def test_advise_answers_the_path_from_the_table(measured_table, capsys):
    code = main(["advise", "--server", "0.11.3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Server upgrade 0.11.3 -> 0.16.8:" in out
    assert "works after fix-ups" in out and "messages.sequence_id default" in out
    assert "letta-compat rehearse --dump prod.dump --to 0.16.8" in out
    assert "0.11.3 -> 0.11.4: not measured" in out  # the hops, one release at a time


@pytest.mark.parametrize("old, new, warned", [("0.11.3", "0.16.8", True), ("0.16.6", "0.16.7", True),
                                              ("0.16.2", "0.16.6", False), ("0.16.7", "0.16.8", False)])
def test_advise_warns_of_a_change_no_fix_up_carries_across_only_where_the_path_crosses_it(measured_table, capsys,
                                                                                         old, new, warned):
    main(["advise", "--server", old, "--to", new])
    out = capsys.readouterr().out
    assert ("from 0.16.7: Letta refuses every MCP server at a private address" in out) is warned, out


def test_advise_names_the_command_that_measures_a_path_it_lacks(measured_table, capsys):
    code = main(["advise", "--server", "0.12.1", "--to", "0.13.0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "not measured yet" in out and "letta-compat advise --server 0.12.1 --to 0.13.0 --measure" in out
    assert "matrices/" not in out.split("Letta Code on")[0]  # a command of the installed package, not of this repo


def test_advise_says_a_same_head_path_has_nothing_to_migrate(measured_table, capsys):
    assert main(["advise", "--server", "v0.16.7"]) == 0  # the image tag's spelling is accepted
    out = capsys.readouterr().out
    assert "nothing to migrate" in out and "1c28e167b74f" in out and "works" in out


@pytest.mark.parametrize("args, said", [
    (["--server", "0.16.2", "--to", "0.11.3"], "only go forward"),
    (["--server", "0.16.2", "--to", "0.16.2"], "the release you run"),
    (["--server", "0.16.2", "--to", "0.17.0"], "--to '0.17.0' is not a Letta server release"),
])
def test_advise_refuses_a_path_it_cannot_answer_in_one_line(args, said, capsys):
    assert main(["advise", *args]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_shipped_table_covers_every_path_it_should():
    table = vu.upgrade_table()
    if not table["paths"]:
        pytest.skip("no server-upgrade table shipped yet")
    assert {(r["from"], r["to"]) for r in table["paths"]} == set(vu.table_paths())
    assert table["measured"] and table["command"]
    json.dumps(table)


def test_advise_measure_runs_the_path_and_answers_from_what_it_measured(monkeypatch, capsys):
    """--measure hands the path to report.measure.run_paths (the shipped upgrade and schema checks
    on real servers; a stand-in writes its report here) and answers from that report alone."""
    from pytest_letta_compat.cli import advise_path

    asked = {}

    def fake_run_paths(paths, *, report, name):
        asked["paths"] = paths
        report.write_text(json.dumps({"tests": [
            _test("upgrade-0.11.3-to-0.16.2", "test_in_place_upgrade_through_the_cli", "passed"),
            _test("upgrade-0.11.3-to-0.16.2", "test_upgraded_database_is_identical_to_a_fresh_one", "failed",
                  "E   AssertionError: letta.runs differs"),
        ]}))
        return 1

    monkeypatch.setattr(advise_path, "run_paths", fake_run_paths)
    assert main(["advise", "--server", "0.11.3", "--to", "0.16.2", "--measure"]) == 1
    out = capsys.readouterr().out
    assert asked["paths"] == [("0.11.3", "0.16.2")]
    assert "Server upgrade 0.11.3 -> 0.16.2, measured now: fails: E   AssertionError: letta.runs differs" in out
