"""``-n N --dist loadgroup`` that really keeps a matrix entry on one worker, so its server starts
once, and keeps ``@pytest.mark.xdist_group`` working. pytest-xdist 3.8 marks groups by
rewriting ``item._nodeid``, which pytest 9 no longer reads: this scheduler takes a matrix
entry's group from the entry id inside the test id, and the workers write an ``xdist_group``
mark's name into the test id (``...::test@name``) as xdist did before pytest 9."""

from __future__ import annotations

import dataclasses
import re

import pytest

# the first parametrization id of a matrix entry: server-0.16.2, upgrade-0.11.3-to-0.16.2, a
# server × Letta Code pair (server-0.16.2-letta-code-0.15.2, grouped with its server), rehearsal-...
_ENTRY = re.compile(r"[\[-](server-[\w.+]+?|upgrade-[\w.+]+?-to-[\w.+]+?|rehearsal-.+?-to-[\w.+]+?)(?=-letta-code-|\]|-)")


def marked_group(nodeid: str) -> str | None:
    """The ``xdist_group`` name a worker wrote into the test id (``...::test@name[params]``: a
    pytest 9 id keeps its parameters last), or None."""
    name = nodeid.rpartition("::")[2].partition("[")[0]
    return name.rpartition("@")[2] if "@" in name else None


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
            # a group of the test's own, else its matrix entry; else spread test by test
            return marked_group(nodeid) or entry_group(nodeid) or nodeid

    return EntryScheduling(config, log)


def write_groups_into_ids(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker under ``--dist loadgroup``: each ``xdist_group`` mark's name into the
    test id, which is all the scheduler sees (xdist's own rewrite of ``item._nodeid`` is lost on
    pytest 9, whose ids come from ``item._id``). For tests outside the matrix: a matrix entry's
    tests keep their ids, the scheduler reads their entry from them."""
    if not hasattr(config, "workerinput") or not getattr(config.option, "loadgroup", False):  # xdist sets it
        return
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and marked_group(item.nodeid) is None and isinstance(getattr(item, "_id", None), NodeId):
            *outer, name = item._id.names
            item._id = dataclasses.replace(item._id, names=(*outer, f"{name}@{'_'.join(names)}"))
