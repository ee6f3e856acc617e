"""Containers never outlive a run: removed at session end, and those of a crashed run
(its owner process is gone) removed when the next run starts."""

from __future__ import annotations

import subprocess
import sys

from pytest_letta_compat.backends.docker import images as docker_images
from pytest_letta_compat.backends.docker.containers import SESSION_LABEL, remove_labelled, session_labels


def _labelled(docker, session: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={session}"})


def test_leftovers_of_a_dead_owner_are_removed_and_a_live_owners_are_kept(docker, tmp_path):
    image = docker_images.resolve_image(docker, "pgvector/pgvector:pg15", docker_images.LOCAL_PGVECTOR, "test")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    crashed = {**session_labels("test-crashed"), "org.letta-compat.owner-pid": dead.stdout.strip()}
    alive = session_labels("test-alive")
    for labels in (crashed, alive):
        docker.containers.run(image, entrypoint=["sleep", "600"], labels=labels, detach=True)
    docker.networks.create("letta-compat-test-crashed", labels=crashed)
    try:
        remove_labelled(docker)
        assert _labelled(docker, "test-crashed") == []
        assert docker.networks.list(filters={"label": f"{SESSION_LABEL}=test-crashed"}) == []
        assert len(_labelled(docker, "test-alive")) == 1
    finally:
        remove_labelled(docker, session="test-alive")
        remove_labelled(docker, session="test-crashed")


def test_a_killed_run_leaves_containers_that_the_next_run_removes(docker, pytester, letta_backend):
    pytester.makefile(".toml", matrix='backend = "docker"\n[[server]]\nversion = "0.16.2"\n')
    pytester.makepyfile(test_inner="""
        import os, signal

        def test_dies_with_postgres_running(letta_backend):
            letta_backend.create_database("left_behind")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    cache = str(letta_backend.cache)
    killed = pytester.runpytest_subprocess("--letta-matrix", "matrix.toml", "--letta-cache-dir", cache, "-p", "no:cacheprovider")
    assert killed.ret == -9
    leftovers = [c for c in docker.containers.list(all=True, filters={"label": SESSION_LABEL})
                 if c.labels.get(SESSION_LABEL) != letta_backend.session]
    assert leftovers, "the killed run's PostgreSQL container should still exist"
    pytester.makepyfile(test_inner="""
        def test_starts_a_backend(letta_backend):
            assert letta_backend.postgres is not None
    """)
    pytester.runpytest_subprocess("--letta-matrix", "matrix.toml", "--letta-cache-dir", cache,
                                  "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [c for c in leftovers if c.id in {x.id for x in docker.containers.list(all=True)}] == []
    # and the run that just ended took its own containers with it
    assert [c for c in docker.containers.list(all=True, filters={"label": SESSION_LABEL})
            if c.labels.get(SESSION_LABEL) != letta_backend.session] == []
