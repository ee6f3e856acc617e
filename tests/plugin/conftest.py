"""Shared helpers for the pytester-based tests of the plugin itself."""

from __future__ import annotations

from pathlib import Path

import pytest

MATRICES = Path(__file__).resolve().parents[2] / "matrices"


@pytest.fixture(autouse=True)
def _no_outer_letta_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs must not see a matrix or cache chosen for the outer run."""
    monkeypatch.delenv("LETTA_MATRIX", raising=False)
    monkeypatch.delenv("LETTA_COMPAT_CACHE", raising=False)


@pytest.fixture
def matrices_dir() -> Path:
    return MATRICES


@pytest.fixture
def write_matrix(pytester: pytest.Pytester):
    """``write_matrix(name, toml_text) -> Path``: a matrix file in the pytester directory."""

    def write(name: str, text: str) -> Path:
        return pytester.makefile(".toml", **{name: text})

    return write


@pytest.fixture
def entry_tests(pytester: pytest.Pytester) -> Path:
    """A test module with one test per matrix parametrization (no server is started)."""
    return pytester.makepyfile(test_entries="""
        def test_server(letta_server_entry):
            pass

        def test_upgrade(letta_upgrade_entry):
            pass
    """)
