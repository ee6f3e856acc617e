"""With ``-n 2 --dist loadgroup`` every test of one matrix entry runs on one worker, so the
entry's server starts once (pytest-xdist's own grouping does not work under pytest 9)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from pytest_letta_compat.plugin.xdist_scheduling import entry_group, marked_group

pytest.importorskip("xdist")


def test_each_entry_stays_on_one_worker(pytester, matrices_dir):
    pytester.makepyfile(test_entries="""
        def test_a(letta_server_entry): pass
        def test_b(letta_server_entry): pass
        def test_c(letta_server_entry): pass
        def test_upgrade(letta_upgrade_entry): pass
        def test_outside_the_matrix(): pass
    """)
    # no servers start here: the entry fixtures only name entries (and the shipped suite stays out)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "letta_suite=false", "-n", "2",
                                           "--dist", "loadgroup", "-v",
                                           "--letta-matrix", str(matrices_dir / "default.toml"))
    result.assert_outcomes(passed=3 * 3 + 2 + 1)
    workers = defaultdict(set)
    for worker, nodeid in re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", result.stdout.str()):
        group = entry_group(nodeid)
        if group:
            workers[group].add(worker)
    assert set(workers) == {"server-0.11.3", "server-0.16.2", "server-0.16.8",
                            "upgrade-0.11.3-to-0.16.2", "upgrade-0.16.2-to-0.16.8"}
    assert all(len(w) == 1 for w in workers.values()), dict(workers)


def test_an_xdist_group_mark_keeps_its_tests_on_one_worker(pytester, matrices_dir):
    """A module whose tests share one process's state (a module global, a module fixture) marks
    itself ``xdist_group``: all of it runs on one worker, as pytest-xdist promises."""
    pytester.makepyfile(test_shared="""
        import pytest

        pytestmark = pytest.mark.xdist_group("shared")
        SEEN = set()

        @pytest.mark.parametrize("n", range(8))
        def test_one(n):
            SEEN.add(n)

        def test_zz_all_seen_in_this_process():
            assert SEEN == set(range(8))
    """, test_spread="""
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_other(n): pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "letta_suite=false", "-n", "2",
                                           "--dist", "loadgroup", "-v",
                                           "--letta-matrix", str(matrices_dir / "default.toml"))
    result.assert_outcomes(passed=8 + 1 + 8)
    workers = defaultdict(set)
    for worker, nodeid in re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", result.stdout.str()):
        workers[nodeid.partition("::")[0].rpartition("/")[2]].add(worker)
    assert len(workers["test_shared.py"]) == 1, dict(workers)
    assert len(workers["test_spread.py"]) == 2, dict(workers)  # unmarked tests still spread


@pytest.mark.parametrize(("nodeid", "group"), [
    ("t.py::test@shared[1-2]", "shared"),
    ("t.py::test@shared", "shared"),
    ("t.py::Class::test@shared", "shared"),
    ("t.py::test[a@b]", None),
    ("dir@x/t.py::test", None),
])
def test_marked_group_is_read_from_the_test_id(nodeid, group):
    assert marked_group(nodeid) == group


@pytest.mark.parametrize(("nodeid", "group"), [
    ("t.py::test[server-0.16.2]", "server-0.16.2"),
    ("t.py::test[server-0.16.2-letta-code-0.34.12]", "server-0.16.2"),
    ("t.py::test[upgrade-0.11.3-to-0.16.2]", "upgrade-0.11.3-to-0.16.2"),
    ("t.py::test[rehearsal-prod-db-to-0.16.8]", "rehearsal-prod-db-to-0.16.8"),
    ("t.py::test[x-server-0.16.8]", "server-0.16.8"),
    ("t.py::test_outside", None),
    ("t.py::test[1-2]", None),
])
def test_entry_group_is_read_from_the_test_id(nodeid, group):
    assert entry_group(nodeid) == group
