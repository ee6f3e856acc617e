"""Tests of the docker backend itself: they run with ``--letta-backend docker`` only."""

from __future__ import annotations

import pytest

from pytest_letta_compat.errors import LettaCompatError


@pytest.fixture(scope="session")
def docker(pytestconfig: pytest.Config, letta_matrix):
    """A docker-py client for the engine the docker backend uses."""
    backend = pytestconfig.getoption("--letta-backend") or (letta_matrix.backend if letta_matrix else "native")
    if backend != "docker":
        pytest.skip("tests of the docker backend: run with --letta-backend docker")
    from pytest_letta_compat.backends.docker.containers import docker_client

    try:
        return docker_client()
    except LettaCompatError as exc:
        pytest.fail(str(exc), pytrace=False)
