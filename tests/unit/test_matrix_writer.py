"""The matrices the tools write (the gates') read back as written, whatever the values."""

from __future__ import annotations

import tomllib

import pytest
pytest.importorskip("hypothesis", reason="the property-based tests need the test extra: pip install -e '.[test]'")
from hypothesis import given, strategies as st

from pytest_letta_compat.matrix.writer import derived_matrix, table, toml_value

values = st.one_of(st.text(), st.booleans(), st.integers(min_value=-10**9, max_value=10**9))


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), values, min_size=1))
def test_a_table_reads_back_with_the_same_values(fields):
    parsed = tomllib.loads("\n".join(table("entry", fields)))
    assert parsed == {"entry": [fields]}


@given(st.text())
def test_a_string_value_survives_quotes_newlines_and_unicode(text):
    assert tomllib.loads(f"v = {toml_value(text)}")["v"] == text


def test_a_derived_matrix_keeps_the_base_settings_and_declarations(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('backend = "docker"\n[postgres]\nversion = 18\n[[letta_code]]\nversion = "0.25.9"\n'
                    '[[known_incompatibility]]\nserver = "<0.12"\ncheck = "letta_code"\nreason = "422 \\"x\\""\n')
    path = tomllib.loads(derived_matrix("g", base, servers=["0.11.3", "0.16.2"], upgrades=[("0.11.3", "0.16.2")]))
    assert path["backend"] == "docker" and path["postgres"] == {"version": 18}
    assert [s["version"] for s in path["server"]] == ["0.11.3", "0.16.2"]
    assert path["upgrade"] == [{"from": "0.11.3", "to": "0.16.2"}]
    assert path["letta_code"] == [{"version": "0.25.9"}]
    assert path["known_incompatibility"][0]["reason"] == '422 "x"'
    bump = tomllib.loads(derived_matrix("g", base, servers=["0.16.8"], letta_code=["0.34.12"]))
    assert bump["letta_code"] == [{"version": "0.34.12"}] and "upgrade" not in bump
