"""A bad matrix stops the run before any test: exit code 4, one ERROR paragraph, no traceback."""

from __future__ import annotations

import pytest

from pytest_letta_compat.errors import MatrixError
from pytest_letta_compat.matrix.model import load_matrix

# (matrix text, fragments the single ERROR message must contain besides the file name)
BAD_MATRICES = {
    "toml-syntax": ('name = "x"\n[[server]\nversion = "0.16.2"\n', ["not valid TOML", "line 2"]),
    "unknown-top-level-key": ('servers = ["0.16.2"]\n', ["unknown key `servers`", "at the top level", "server"]),
    "unknown-server-key": ('[[server]]\nversion = "0.16.2"\nport = 8283\n',
                           ["unknown key `server[0].port`", "backend, secure, version"]),
    "unreleased-server-version": ('[[server]]\nversion = "0.16.3"\n',
                                  ["`server[0].version`", "'0.16.3'", "0.16.2, 0.16.4"]),
    "postgres-14": ("[postgres]\nversion = 14\n", ["`postgres.version`", "value 14", ">= 15"]),
    "postgres-17-without-bin-dir": ("[postgres]\nversion = 17\n",
                                    ["`postgres.version`", "value 17", "16 or 18", "postgres.bin_dir"]),
    "bad-backend": ('backend = "kubernetes"\n', ["`backend`", "'kubernetes'", '"native"']),
    "bad-server-backend": ('[[server]]\nversion = "0.16.2"\nbackend = "podman"\n',
                           ["`server[0].backend`", "'podman'", '"native"']),
    "downgrade": ('[[upgrade]]\nfrom = "0.16.2"\nto = "0.11.3"\n',
                  ["`upgrade[0].to`", "'0.11.3'", "newer than `upgrade[0].from` (0.16.2)"]),
    "upgrade-to-same-version": ('[[upgrade]]\nfrom = "0.16.2"\nto = "0.16.2"\n',
                                ["`upgrade[0].to`", "'0.16.2'", "newer than"]),
    "unknown-check": ('[[known_incompatibility]]\nserver = "<0.12"\ncheck = "speed"\nreason = "slow"\n',
                      ["`known_incompatibility[0].check`", "'speed'", "smoke, schema"]),
    "invalid-specifier": ('[[known_incompatibility]]\nserver = "<<0.12"\ncheck = "smoke"\nreason = "x"\n',
                          ["`known_incompatibility[0].server`", "'<<0.12'", "version specifier"]),
}


def assert_usage_error(result: pytest.RunResult, *fragments: str) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in output
    assert "test_must_not_run" not in output


@pytest.fixture
def never_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_never="def test_must_not_run(letta_server_entry):\n    raise SystemExit(99)\n")


@pytest.mark.parametrize("text, fragments", BAD_MATRICES.values(), ids=BAD_MATRICES)
def test_bad_matrix_is_a_usage_error_naming_file_key_value(pytester, write_matrix, never_run, text, fragments):
    path = write_matrix("bad", text)
    result = pytester.runpytest_inprocess(f"--letta-matrix={path}")
    assert_usage_error(result, str(path), *fragments)


def test_missing_matrix_file_is_a_usage_error(pytester, never_run):
    missing = pytester.path / "nowhere.toml"
    result = pytester.runpytest_inprocess(f"--letta-matrix={missing}")
    assert_usage_error(result, str(missing), "cannot be read")


def test_default_matrix_covers_the_incident_upgrade_and_the_newest_server(matrices_dir):
    m = load_matrix(matrices_dir / "default.toml")
    assert (m.name, m.backend, m.postgres.version, m.postgres.bin_dir) == ("default", "native", 16, None)
    assert [(s.version, s.secure) for s in m.servers] == [("0.11.3", False), ("0.16.2", True), ("0.16.8", True)]
    assert [u.id for u in m.upgrades] == ["upgrade-0.11.3-to-0.16.2", "upgrade-0.16.2-to-0.16.8"]
    assert [c.version for c in m.letta_code] == ["0.25.9", "0.34.12"]
    assert m.server_versions() == ["0.11.3", "0.16.2", "0.16.8"]
    assert [(k.check, str(k.server), str(k.letta_code)) for k in m.known_incompatibilities] == [
        ("letta_code", "<0.12", ">=0.15.2"), ("ollama", ">=0.16.2", "None"), ("ollama_v1", "==0.16.2", "None")]
    assert all("letta#3142" in k.reason for k in m.known_incompatibilities[1:])


def test_ci_matrix_runs_the_incident_upgrade_path(matrices_dir):
    m = load_matrix(matrices_dir / "ci.toml")
    assert (m.name, m.backend, m.postgres.version) == ("ci", "native", 16)
    assert [(s.version, s.secure) for s in m.servers] == [("0.11.3", False), ("0.16.2", True)]
    assert [(u.from_version, u.to_version) for u in m.upgrades] == [("0.11.3", "0.16.2")]
    assert [c.version for c in m.letta_code] == ["0.34.12"]
    assert [(k.check, str(k.server)) for k in m.known_incompatibilities] == [
        ("letta_code", "<0.12"), ("ollama", ">=0.16.2"), ("ollama_v1", "==0.16.2")]


def test_postgres_17_is_accepted_with_a_bin_dir(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[postgres]\nversion = 17\nbin_dir = "/usr/lib/postgresql/17/bin"\n[[server]]\nversion = "0.16.2"\n')
    assert load_matrix(path).postgres.bin_dir == "/usr/lib/postgresql/17/bin"


def test_duplicate_server_entry_is_rejected(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[server]]\nversion = "0.16.2"\n[[server]]\nversion = "0.16.2"\n')
    with pytest.raises(MatrixError, match=r"lists server-0\.16\.2 twice"):
        load_matrix(path)
