"""``-n N --dist loadgroup`` that really keeps a matrix entry on one worker, so its server starts
once. pytest-xdist 3.8 marks groups by rewriting ``item._nodeid``, which pytest 9 no longer
reads; this scheduler takes the group from the entry id inside the test id instead."""

from __future__ import annotations

import re

import pytest

# the first parametrization id of a matrix entry: server-0.16.2, upgrade-0.11.3-to-0.16.2, a
# server × Letta Code pair (server-0.16.2-letta-code-0.15.2, grouped with its server), rehearsal-...
_ENTRY = re.compile(r"[\[-](server-[\w.+]+?|upgrade-[\w.+]+?-to-[\w.+]+?|rehearsal-.+?-to-[\w.+]+?)(?=-letta-code-|\]|-)")


def entry_group(nodeid: str) -> str | None:
    """The matrix entry a test id belongs to, or None for tests outside the matrix."""
    params = nodeid.rpartition("[")[2] if "[" in nodeid else ""
    match = _ENTRY.search("[" + params)
    return match.group(1) if match else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class EntryScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return entry_group(nodeid) or nodeid  # outside the matrix: spread test by test

    return EntryScheduling(config, log)
