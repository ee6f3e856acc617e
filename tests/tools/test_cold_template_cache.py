"""A backend on a cold template cache and a work directory that does not exist yet (what
`letta-compat rehearse` hands it on an operator's first run): the first database of a release
is migrated and its log kept, instead of a FileNotFoundError after the alembic run."""

from __future__ import annotations

import pytest

from pytest_letta_compat.backends import make_backend
from pytest_letta_compat.matrix.model import PostgresSpec


def test_first_template_on_a_cold_cache_into_a_new_work_directory(letta_backend, tmp_path):
    if letta_backend.name != "native":
        pytest.skip("the embedded cluster's template cache")
    cache = tmp_path / "cache"  # the installs are shared, the templates are not
    cache.mkdir()
    for shared in ("servers", "migrations"):
        (letta_backend.cache / shared).mkdir(parents=True, exist_ok=True)
        (cache / shared).symlink_to(letta_backend.cache / shared)
    workdir = tmp_path / "not" / "made" / "yet"
    backend = make_backend("native", postgres=PostgresSpec(version=16), cache=cache, workdir=workdir)
    backend.start()
    try:
        backend.create_database("first", version="0.11.3")
        with backend.connect("first") as conn:
            (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        backend.cleanup()
    assert revision == "5fb8bba2c373"  # 0.11.3's head
    assert (workdir / "migrate-tmpl_0_11_3.log").read_text().startswith("$ alembic upgrade")
