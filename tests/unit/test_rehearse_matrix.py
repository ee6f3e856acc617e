"""[[rehearsal]] entries of a matrix: one test id per dump and target, mistakes named."""

from __future__ import annotations

import pytest

from pytest_letta_compat.errors import MatrixError
from pytest_letta_compat.matrix.model import parse_matrix


def test_one_entry_per_target_relative_to_the_matrix(tmp_path):
    (tmp_path / "nightly").mkdir()
    dump = tmp_path / "nightly" / "prod.dump"
    dump.write_bytes(b"PGDMP")
    matrix = parse_matrix({"rehearsal": [{"dump": "nightly/prod.dump", "to": ["0.16.2", "0.16.8"]}]},
                          tmp_path / "m.toml")
    assert [e.id for e in matrix.rehearsals] == ["rehearsal-prod-to-0.16.2", "rehearsal-prod-to-0.16.8"]
    assert matrix.rehearsals[0].dump == dump


@pytest.mark.parametrize("entry, message", [
    ({"dump": "missing.dump", "to": ["0.16.8"]}, "an existing file"),
    ({"dump": "prod.dump", "to": []}, "a list of releases to rehearse the upgrade to"),
    ({"dump": "prod.dump", "to": ["0.99.0"]}, "`rehearsal[0].to[0]` has value '0.99.0'"),
    ({"dump": "prod.dump", "to": ["0.16.8"], "from": "0.11.3"}, "unknown key `rehearsal[0].from`"),
])
def test_mistakes_are_named(tmp_path, entry, message):
    (tmp_path / "prod.dump").write_bytes(b"PGDMP")
    with pytest.raises(MatrixError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_matrix({"rehearsal": [entry]}, tmp_path / "m.toml")
