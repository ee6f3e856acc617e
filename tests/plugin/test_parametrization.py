"""Tests using letta_server_entry / letta_upgrade_entry run once per matrix entry, with readable ids."""

from __future__ import annotations

import json

import pytest


def test_entry_fixtures_get_one_id_per_matrix_entry(pytester, matrices_dir, entry_tests):
    result = pytester.runpytest_inprocess("--collect-only", "-q", f"--letta-matrix={matrices_dir / 'default.toml'}")
    assert result.ret == pytest.ExitCode.OK
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected == [
        "test_entries.py::test_server[server-0.11.3]",
        "test_entries.py::test_server[server-0.16.2]",
        "test_entries.py::test_server[server-0.16.8]",
        "test_entries.py::test_upgrade[upgrade-0.11.3-to-0.16.2]",
        "test_entries.py::test_upgrade[upgrade-0.16.2-to-0.16.8]",
    ]


def test_each_test_gets_its_entry_and_an_xdist_group_named_after_it(pytester, matrices_dir):
    pytester.makepyfile("""
        def test_server(request, letta_server_entry):
            assert request.node.callspec.id == letta_server_entry.id == f"server-{letta_server_entry.version}"
            assert letta_server_entry.secure == (letta_server_entry.version != "0.11.3")
            assert request.node.get_closest_marker("xdist_group").args == (letta_server_entry.id,)

        def test_upgrade(request, letta_upgrade_entry):
            assert (letta_upgrade_entry.from_version, letta_upgrade_entry.to_version) == ("0.11.3", "0.16.2")
            assert request.node.get_closest_marker("xdist_group").args == ("upgrade-0.11.3-to-0.16.2",)

        def test_plain(request):
            assert request.node.get_closest_marker("xdist_group") is None
    """)
    result = pytester.runpytest_inprocess(f"--letta-matrix={matrices_dir / 'ci.toml'}")
    result.assert_outcomes(passed=4)


def test_xdist_group_markers_exist_before_other_plugins_modify_items(pytester, matrices_dir, entry_tests):
    """xdist's worker reads xdist_group in its own pytest_collection_modifyitems (registered after
    the plugin, so called before it unless the plugin's hook runs tryfirst); a conftest hook stands in."""
    pytester.makeconftest("""
        import json, pathlib

        def pytest_collection_modifyitems(items):
            groups = {i.nodeid: [m.args[0] for m in i.iter_markers("xdist_group")] for i in items}
            pathlib.Path("groups.json").write_text(json.dumps(groups))
    """)
    result = pytester.runpytest_inprocess("--collect-only", f"--letta-matrix={matrices_dir / 'ci.toml'}")
    assert result.ret == pytest.ExitCode.OK
    assert json.loads((pytester.path / "groups.json").read_text()) == {
        "test_entries.py::test_server[server-0.11.3]": ["server-0.11.3"],
        "test_entries.py::test_server[server-0.16.2]": ["server-0.16.2"],
        "test_entries.py::test_upgrade[upgrade-0.11.3-to-0.16.2]": ["upgrade-0.11.3-to-0.16.2"],
    }


def test_strict_markers_without_xdist_installed_still_runs(pytester, matrices_dir, entry_tests):
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--strict-markers",
                                           f"--letta-matrix={matrices_dir / 'ci.toml'}")
    result.assert_outcomes(passed=3)
    assert "INTERNALERROR" not in result.stdout.str()


def test_matrix_without_upgrades_skips_upgrade_tests_with_a_reason(pytester, write_matrix, entry_tests):
    path = write_matrix("servers_only", '[[server]]\nversion = "0.16.2"\n')
    result = pytester.runpytest_inprocess("-rs", f"--letta-matrix={path}")
    result.assert_outcomes(passed=1, skipped=1)
    assert f"matrix {path} has no [[upgrade]] entries" in result.stdout.str()
