"""`--letta-compose`: the suite runs against the operator's own stack, then removes it, and
never touches the operator's data directory, ports or container names."""

from __future__ import annotations

import shutil
from pathlib import Path

from pytest_letta_compat.backends.docker.containers import SESSION_LABEL
from pytest_letta_compat.plugin.suite_collector import SUITE_DIR

STACK = Path(__file__).parent / "compose"
SMOKE = SUITE_DIR / "test_smoke.py"


def test_the_smoke_suite_passes_against_the_operators_compose_stack(docker, pytester, letta_backend):
    stack = pytester.path / "stack"
    shutil.copytree(STACK, stack)
    shutil.copy(SMOKE, pytester.path / "test_smoke.py")
    before = {c.id for c in docker.containers.list(all=True)}
    volumes_before = {v.name for v in docker.volumes.list()}
    result = pytester.runpytest_subprocess("--letta-compose", str(stack / "docker-compose.letta.yml"),
                                           "--letta-cache-dir", str(letta_backend.cache), "-p", "no:cacheprovider",
                                           "-W", "always")
    out = result.stdout.str()
    # one [[server]] entry: the compose file's pinned Letta, secure as the file says
    assert "servers 0.16.2; upgrades -" in out
    result.assert_outcomes(passed=6, skipped=1)  # skipped: the in-place upgrade needs an [[upgrade]] entry
    assert "the bind mount ./pgdata -> /var/lib/postgresql/data is replaced by a throwaway volume" in out
    assert not (stack / "pgdata").exists()
    # nothing of that run is left: containers, networks, volumes
    left = [c.name for c in docker.containers.list(all=True) if c.id not in before]
    assert left == []
    ours = {"label": SESSION_LABEL}
    assert [n.name for n in docker.networks.list(filters=ours)
            if n.attrs["Labels"].get(SESSION_LABEL) != letta_backend.session] == []
    assert [v.name for v in docker.volumes.list() if v.name not in volumes_before] == []
