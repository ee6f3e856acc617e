"""A container's log, as the docker backend keeps it: every line stamped with the time it
reached us (as the native backend's pump does), secrets masked, lines split across chunks kept whole."""

from __future__ import annotations

import re

from pytest_letta_compat.backends.docker.containers import ContainerLog
from pytest_letta_compat.errors import register_secret


class FakeContainer:
    name = "letta-test-1"

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def logs(self, *, stream: bool, follow: bool):
        assert stream and follow
        yield from self.chunks


def test_each_line_is_stamped_and_masked_and_split_chunks_are_rejoined(tmp_path):
    register_secret("pw-Quokka-77")
    chunks = [b"INFO: Started server process\nINFO: conn", b"ecting to postgresql://letta:pw-Quokka-77@db/letta\n",
              b"ERROR: unfinished last line"]
    log = ContainerLog(FakeContainer(chunks), tmp_path / "letta-server.log")
    log.join()
    lines = (tmp_path / "letta-server.log").read_text().splitlines()
    stamp = r"\d\d:\d\d:\d\d\.\d{3} "
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z -- container letta-test-1 followed", lines[0])
    assert re.fullmatch(stamp + "INFO: Started server process", lines[1])
    assert re.fullmatch(stamp + re.escape("INFO: connecting to postgresql://letta:***@db/letta"), lines[2])
    assert re.fullmatch(stamp + "ERROR: unfinished last line", lines[3])
    assert lines[4].endswith("-- container letta-test-1 output ended")
    assert "pw-Quokka-77" not in log.tail(10)
