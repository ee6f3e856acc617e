"""`letta-compat init`: the matrix it writes is valid and pinned to the operator's Letta, the
workflow runs a gate command our CLI accepts, and bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import pytest
import yaml
pytest.importorskip("hypothesis", reason="the property-based tests need the test extra: pip install -e '.[test]'")
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from pytest_letta_compat import versions, versions_letta_code
from pytest_letta_compat.cli.main import build_parser, main
from pytest_letta_compat.matrix import scaffold
from pytest_letta_compat.matrix.compose_file import UnpinnedImageError, check_pinned
from pytest_letta_compat.matrix.model import load_matrix

COMPOSE = """services:
  letta-db:
    image: pgvector/pgvector:pg15
  letta:
    image: {image}
    environment:
      LETTA_PG_URI: postgresql://letta:letta@letta-db:5432/letta
      SECURE: "{secure}"
"""

KNOWN = versions.known_server_versions()
LETTA_CODE = st.lists(st.sampled_from(versions_letta_code.installable()), max_size=3, unique=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LETTA_VERSION", raising=False)
    return tmp_path


def compose(repo: Path, image: str, secure: bool = False, name: str = "docker-compose.yml") -> Path:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(COMPOSE.format(image=image, secure=str(secure).lower()))
    return path


def init(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


@settings(max_examples=60, deadline=None)
@given(version=st.sampled_from(KNOWN), secure=st.booleans(), letta_code=LETTA_CODE,
       compose_name=st.sampled_from([None, "docker-compose.yml", "deploy/compose.yaml"]))
def test_a_written_matrix_is_valid_and_pinned_to_the_current_version(version, secure, letta_code, compose_name):
    deployment = scaffold.Deployment(version, secure=secure, compose=compose_name, letta_code=tuple(letta_code))
    with tempfile.TemporaryDirectory() as tmp:
        written = scaffold.write(Path(tmp), scaffold.files_for(deployment))
        matrix = load_matrix(Path(tmp) / scaffold.MATRIX_FILE)
    assert [(s.version, s.secure) for s in matrix.servers] == [(version, secure)]
    newer = [v for v in KNOWN if Version(v) > Version(version)]
    assert [(u.from_version, u.to_version) for u in matrix.upgrades] == [(version, v) for v in newer]
    assert [c.version for c in matrix.letta_code] == letta_code
    assert (scaffold.WORKFLOW_FILE in written) == (compose_name is not None)
    for code in letta_code:  # Letta Code on a 0.11.x server is declared, not left to fail
        declared = matrix.incompatibility("letta_code", version, code) is not None
        assert declared == (Version(version) < Version("0.12"))
    for release in [version, *newer]:  # letta#3142, as the shipped matrices declare it
        assert (matrix.incompatibility("ollama", release, None) is not None) == (Version(release) >= Version("0.16.2"))
        assert (matrix.incompatibility("ollama_v1", release, None) is not None) == (release == "0.16.2")


def test_init_declares_the_release_breakages_as_the_shipped_matrices_do():
    shipped = load_matrix(Path(__file__).resolve().parents[2] / "matrices" / "default.toml")
    declared = {(str(k.server), k.check, k.reason) for k in shipped.known_incompatibilities if k.letta_code is None}
    assert set(scaffold.RELEASE_INCOMPATIBILITIES) == declared


def test_the_workflow_runs_the_gate_on_compose_changes_with_a_command_the_cli_accepts(repo, capsys):
    compose(repo, "letta/letta:0.16.2", name="deploy/docker-compose.yml")
    code, out, err = init(capsys, "--compose", "deploy/docker-compose.yml")
    assert code == 0, err
    workflow = yaml.safe_load((repo / ".github/workflows/letta-gate.yml").read_text())
    trigger = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "deploy/docker-compose.yml" in trigger["pull_request"]["paths"]
    steps = workflow["jobs"]["gate"]["steps"]
    assert any(s.get("with", {}).get("fetch-depth") == 0 for s in steps)  # the base branch is needed
    (run,) = [s["run"] for s in steps if "letta-compat gate" in s.get("run", "")]
    argv = shlex.split(run.replace("${{ github.base_ref }}", "main"))
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.compose, args.base_ref, args.matrix) == (
        "gate", "deploy/docker-compose.yml", "origin/main", scaffold.MATRIX_FILE)
    assert args.suite is None  # the suite shipped in the package
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == f"{args.report}.*" and upload["if"] == "always()"
    assert "written: .github/workflows/letta-gate.yml" in out
    assert "next: pytest --letta-matrix letta-matrix.toml --letta-suite" in out


def test_the_matrix_follows_the_compose_file_tag_env_and_secure_mode(repo, capsys):
    compose(repo, "letta/letta:${LETTA_VERSION:-0.11.3}", secure=True)
    (repo / ".env").write_text("LETTA_VERSION=0.16.4\n")
    code, out, err = init(capsys, "--compose", "docker-compose.yml", "--letta-code", "0.25.9")
    assert code == 0, err
    matrix = load_matrix(repo / scaffold.MATRIX_FILE)
    assert [(s.version, s.secure) for s in matrix.servers] == [("0.16.4", True)]
    assert [u.to_version for u in matrix.upgrades] == ["0.16.5", "0.16.6", "0.16.7", "0.16.8"]
    assert [c.version for c in matrix.letta_code] == ["0.25.9"]
    assert "Letta 0.16.4, secure; 4 upgrade paths (0.16.5 ... 0.16.8); Letta Code: 0.25.9 (from --letta-code)" in out


def test_an_unpinned_compose_gets_check_pinneds_refusal_and_nothing_is_written(repo, capsys):
    compose(repo, "letta/letta:latest")
    with pytest.raises(UnpinnedImageError) as refusal:
        check_pinned("docker-compose.yml")
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 2
    assert err == f"letta-compat: error: {refusal.value}\n" and "latest" in err
    assert sorted(p.name for p in repo.iterdir()) == ["docker-compose.yml"]


def test_existing_files_are_never_overwritten_without_force(repo, capsys):
    compose(repo, "letta/letta:0.16.2")
    (repo / scaffold.MATRIX_FILE).write_text("# my own matrix\n")
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 2 and err.count("\n") == 1
    assert "letta-matrix.toml already exists" in err and "--force" in err
    assert (repo / scaffold.MATRIX_FILE).read_text() == "# my own matrix\n"
    assert not (repo / ".github").exists()  # all or nothing
    code, out, err = init(capsys, "--compose", "docker-compose.yml", "--force")
    assert code == 0, err
    assert load_matrix(repo / scaffold.MATRIX_FILE).servers[0].version == "0.16.2"


def test_from_version_alone_writes_the_matrix_but_no_workflow(repo, capsys):
    code, out, err = init(capsys, "--from", "0.16.7")
    assert code == 0, err
    assert [(u.from_version, u.to_version) for u in load_matrix(repo / scaffold.MATRIX_FILE).upgrades] == [
        ("0.16.7", "0.16.8")]
    assert not (repo / ".github").exists()
    assert "no CI workflow" in out


def test_a_digest_only_pin_needs_from(repo, capsys):
    compose(repo, "letta/letta@sha256:" + "a" * 64)
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 2 and "digest only" in err and "--from" in err and err.count("\n") == 1
    code, out, err = init(capsys, "--compose", "docker-compose.yml", "--from", "0.16.2")
    assert code == 0, err
    assert load_matrix(repo / scaffold.MATRIX_FILE).servers[0].version == "0.16.2"


@pytest.mark.parametrize("args, says", [
    (["--from", "0.16.3"], "--from '0.16.3' is not a Letta server release this tool knows. Allowed: 0.11.0"),
    (["--from", "0.16.7", "--letta-code", "0.1"], "--letta-code: Letta Code '0.1' is neither in the release table nor published on PyPI or npm. Allowed: a Letta Code release that installs"),
    (["--compose", "docker-compose.yml", "--from", "0.16.4"], "runs `letta/letta:0.16.2` (Letta 0.16.2)"),
    (["--compose", "missing.yml"], "missing.yml: the compose file cannot be read"),
    (["--from", "0.16.7", "--dir", "docker-compose.yml"], "docker-compose.yml is a file, not a directory"),
    ([], "init needs your Letta version: --compose FILE"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(repo, capsys, args, says):
    compose(repo, "letta/letta:0.16.2")
    code, out, err = init(capsys, *args)
    assert code == 2
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in repo.iterdir()) == ["docker-compose.yml"]


@pytest.mark.parametrize("name, text", [
    ("package.json", '{"dependencies": {"@letta-ai/letta-code": "0.25.9"}}'),
    ("requirements-bot.txt", "httpx==0.28.1\nletta==0.34.12  # Letta Code\n"),
    ("pyproject.toml", '[project]\nname = "ops"\ndependencies = ["letta==0.34.12"]\n'),
])
def test_init_reads_the_letta_code_the_repository_pins(repo, capsys, name, text):
    compose(repo, "letta/letta:0.16.8")
    (repo / name).write_text(text)
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 0, err
    version = "0.25.9" if name == "package.json" else "0.34.12"
    assert [c.version for c in load_matrix(repo / scaffold.MATRIX_FILE).letta_code] == [version]
    assert f"Letta Code: {version} (from {name})" in out


def test_a_server_pin_of_letta_is_not_taken_for_letta_code_and_an_unbounded_one_is_warned_of(repo, capsys):
    compose(repo, "letta/letta:0.16.8")
    (repo / "requirements.txt").write_text("letta==0.16.8\n")
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 0 and "Letta Code: none found" in out and "warning" not in out
    (repo / "requirements.txt").write_text("letta>=0.16\n")
    code, out, err = init(capsys, "--compose", "docker-compose.yml", "--force")
    assert code == 0, err
    assert "warning: requirements.txt: `letta>=0.16` has no upper bound" in out and "letta==0.16.8" in out


def test_the_workflow_installs_the_wheel_init_writes_and_watches_letta_code_daily(repo, capsys):
    compose(repo, "letta/letta:0.16.2")
    code, out, err = init(capsys, "--compose", "docker-compose.yml")
    assert code == 0, err
    wheels = list((repo / scaffold.WHEEL_DIR).glob("pytest_letta_compat-*-py3-none-any.whl"))
    assert len(wheels) == 1 and wheels[0].stat().st_size > 10_000
    workflow = yaml.safe_load((repo / ".github/workflows/letta-gate.yml").read_text())
    for job in ("gate", "watch"):
        steps = workflow["jobs"][job]["steps"]
        (install,) = [s["run"] for s in steps if "pip install" in s.get("run", "")]
        assert shlex.split(install)[-1] == f"./{scaffold.WHEEL_DIR}/{wheels[0].name}"
        (python,) = [s["with"]["python-version"] for s in steps if s.get("uses", "").startswith("actions/setup-python")]
        assert python == scaffold.WORKFLOW_PYTHON
    assert workflow[True]["schedule"] and workflow["jobs"]["watch"]["if"] == "github.event_name != 'pull_request'"
    (watch,) = [s["run"] for s in workflow["jobs"]["watch"]["steps"] if "letta-compat watch" in s.get("run", "")]
    args = build_parser().parse_args(shlex.split(watch)[1:])
    assert (args.command, args.matrix) == ("watch", scaffold.MATRIX_FILE)
    assert "pytest-letta-compat==" not in (repo / ".github/workflows/letta-gate.yml").read_text()


def test_install_spec_replaces_the_wheel(repo, capsys):
    compose(repo, "letta/letta:0.16.2")
    spec = "pytest-letta-compat @ git+https://example.invalid/ops/pytest-letta-compat@v0.1.0"
    code, out, err = init(capsys, "--compose", "docker-compose.yml", "--install", spec)
    assert code == 0, err
    assert not (repo / scaffold.WHEEL_DIR).exists()
    assert f'pip install "{spec}"' in (repo / ".github/workflows/letta-gate.yml").read_text()


def test_the_workflow_python_is_the_readmes():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"Python {scaffold.WORKFLOW_PYTHON}" in readme
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'requires-python = ">={scaffold.WORKFLOW_PYTHON}"' in pyproject
