"""Rehearse the matrix's [[rehearsal]] dumps (an operator's nightly dump, say) with the same
verdicts as ``letta-compat rehearse``: one test per dump and target, ids
``rehearsal-<dump stem>-to-<version>``. What a plain tag bump would lose is a warning."""

from __future__ import annotations

import warnings

import pytest

from pytest_letta_compat.report.rehearsal import path_problems

pytestmark = pytest.mark.letta_check("upgrade")


def test_every_agent_comes_through_the_letta_compat_path(letta_rehearsal, letta_rehearsal_entry):
    path = letta_rehearsal.path("letta-compat")
    image = letta_rehearsal.path("image")
    for line in path_problems(image):
        warnings.warn(f"{letta_rehearsal_entry.id}: a plain tag bump (the image path): {line}", stacklevel=1)
    problems = path_problems(path)
    assert path["verdict"] == "intact", (
        f"{letta_rehearsal_entry.dump} -> Letta {letta_rehearsal_entry.to_version}: {path['verdict']}\n  "
        + "\n  ".join(problems))


def test_the_upgraded_copy_passes_the_targets_schema_check(letta_rehearsal):
    path = letta_rehearsal.path("letta-compat")
    assert path["schema_ready"], "\n".join(path["schema_problems"])


def test_a_sample_of_agents_still_converses(letta_rehearsal):
    path = letta_rehearsal.path("letta-compat")
    exchange = path["exchange"]
    through = sum(1 for agent in path["agents"] if agent["verdict"] in ("intact", "changed"))
    assert exchange, (f"no agent was sent a message after the upgrade ({through} of {len(path['agents'])} "
                      "agents came through): nothing shows the upgraded server still converses")
    failed = [f"{e['name']!r}: {e['detail']}" for e in exchange if not e["ok"]]
    assert not failed, "\n".join(failed)
