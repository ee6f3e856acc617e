"""What we write appears whole under its real name or not at all: a backup's files, a
template's dump, the seed cache's directory, a moved agent's record."""

from __future__ import annotations

import os
import stat

import pytest

from pytest_letta_compat.paths import atomic_path, write_text_atomic


def test_a_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as partial:
            partial.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_directory_replaces_the_old_one_whole(tmp_path):
    cached = tmp_path / "seed" / "0.16.8"
    cached.mkdir(parents=True)
    (cached / "stale").write_text("from an earlier run")
    with atomic_path(cached) as partial:
        partial.mkdir()
        (partial / "seed.dump").write_bytes(b"dump")
    assert sorted(p.name for p in cached.iterdir()) == ["seed.dump"]
    assert sorted(p.name for p in cached.parent.iterdir()) == ["0.16.8"]


def test_a_private_file_is_never_readable_by_others(tmp_path):
    target = tmp_path / "deep" / "moves.json"
    write_text_atomic(target, '{"secret": "kept"}', mode=0o600)
    assert target.read_text() == '{"secret": "kept"}'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
