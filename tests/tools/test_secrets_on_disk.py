"""No password is left in the files a server run leaves behind (its log, its HOME with Letta's
own ~/.letta/config), so a CI job that uploads pytest's basetemp publishes none."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.letta_check("smoke")


def test_server_files_hold_neither_the_database_nor_the_server_password(letta_server, letta_client, letta_matrix):
    if (letta_matrix.backend if letta_matrix else "native") != "native":
        pytest.skip("the files of a container stay inside it")
    assert letta_client.get("/v1/agents/").status_code == 200  # the server wrote what it writes at work
    secrets = {urlsplit(letta_server.dsn).password, letta_server.password} - {None}
    files = [p for p in letta_server.workdir.rglob("*") if p.is_file()]
    assert any(p.name == "config" and p.parent.name == ".letta" for p in files), "Letta wrote no ~/.letta/config"
    leaked = [str(p) for p in files for s in secrets if s.encode() in p.read_bytes()]
    assert leaked == []
