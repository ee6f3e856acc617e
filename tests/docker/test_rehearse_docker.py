"""``letta-compat rehearse --backend docker``: the shared 0.11.3 dump (seeded through a 0.11.3
container, pg_dump of the container's database), rehearsed to 0.16.2 in containers, as an
operator runs it."""

from __future__ import annotations

import json

import pytest

from pytest_letta_compat.backends.docker.containers import SESSION_LABEL
from rehearse_seed import OLD, SANDBOX_SECRET, SECRET, SLASH_NAME, UNICODE_NAME, by_name, rehearse

pytestmark = pytest.mark.letta_check("upgrade")


def test_a_0_11_3_dump_rehearsed_to_0_16_2_on_the_docker_backend(docker, seeded, letta_backend, tmp_path):
    _, _, dump = seeded
    ours = {c.id for c in docker.containers.list(all=True, filters={"label": SESSION_LABEL})}
    report_path = tmp_path / "rehearsal.json"
    result = rehearse(letta_backend.cache, "--backend", "docker", "--dump", str(dump), "--to", "0.16.2",
                      "--report", str(report_path))
    assert result.returncode in (0, 1) and report_path.exists(), result.stdout + result.stderr[-5000:]
    for text in (result.stdout, result.stderr, report_path.read_text()):
        assert SECRET not in text and SANDBOX_SECRET not in text
    report = json.loads(report_path.read_text())
    assert report["backend"] == "docker"
    assert report["source"]["inventory_via"] == f"api {OLD}"  # the 0.11.3 image read the copy before
    target = report["targets"][0]
    assert target["version"] == "0.16.2"
    compat, image = target["paths"]["letta-compat"], target["paths"]["image"]
    assert compat["server_started"] and image["server_started"], result.stderr[-3000:]
    named = by_name(compat)
    assert {SLASH_NAME, UNICODE_NAME, "long-history", "tool-user"} <= set(named)
    assert named[SLASH_NAME]["verdict"] == "intact", named[SLASH_NAME]
    assert named[SLASH_NAME]["after"]["name"] == SLASH_NAME  # read back through 0.16.2's API
    assert all(agent["verdict"] == "intact" for agent in compat["agents"]), compat["agents"]
    assert compat["verdict"] == "intact" and result.returncode == 0, result.stdout
    assert set(by_name(image)) == set(named)  # the image path judged every agent too
    assert any(e["ok"] for e in compat["exchange"]), compat["exchange"]
    # the rehearsal's own containers are gone; the session's are untouched
    left = {c.id for c in docker.containers.list(all=True, filters={"label": SESSION_LABEL})}
    assert left <= ours
