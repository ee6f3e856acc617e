"""Issue 13: the gate's inputs. Unknown versions are bad input (exit 2), not "NOT compatible";
the compose override file and .env inline comments are read as Docker Compose reads them;
an unchanged tag still leaves the report a CI step may `cat`."""

from __future__ import annotations

import json

import pytest

from pytest_letta_compat.cli.main import main
from pytest_letta_compat.matrix import compose_file
from pytest_letta_compat.report.grid import load_report


@pytest.fixture(autouse=True)
def _no_tag_in_the_environment(monkeypatch):
    monkeypatch.delenv("TAG", raising=False)


def gate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["gate", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def compose(tmp_path, image: str = "letta/letta:0.16.2", name: str = "docker-compose.yml"):
    path = tmp_path / name
    path.write_text(f"services:\n  letta:\n    image: {image}\n  db:\n    image: pgvector/pgvector:pg15\n")
    return path


def test_unknown_target_version_is_bad_input_not_incompatible(tmp_path, capsys):
    code, out, err = gate(capsys, "--compose", str(compose(tmp_path, "letta/letta:0.99.0")), "--from", "0.16.2")
    assert code == 2 and "NOT compatible" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert "'0.99.0' is not a Letta server release this tool knows. Allowed: 0.11.0" in err
    assert "0.16.8" in err


def test_an_override_file_that_sets_latest_is_read_and_refused(tmp_path, capsys):
    path = compose(tmp_path)
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  letta:\n    image: letta/letta:latest\n")
    code, out, err = gate(capsys, "--compose", str(path), "--from", "0.16.2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "docker-compose.override.yml beside it merged in" in err and "`letta/letta:latest`" in err


def test_the_override_file_merges_as_compose_merges():
    doc = compose_file._merge(
        {"services": {"letta": {"image": "a:1", "environment": ["A=1", "B=2"], "ports": ["8283:8283"],
                                "command": ["x", "y"]}}},
        {"services": {"letta": {"environment": {"B": "3"}, "ports": ["9000:9000"], "command": ["z"]},
                      "extra": {"image": "b:2"}}})
    letta = doc["services"]["letta"]
    assert letta == {"image": "a:1", "environment": {"A": "1", "B": "3"}, "ports": ["8283:8283", "9000:9000"],
                     "command": ["z"]}
    assert doc["services"]["extra"] == {"image": "b:2"}


def test_an_override_beside_a_file_of_another_name_is_not_merged(tmp_path):
    path = compose(tmp_path, name="prod.yml")  # `docker compose -f prod.yml` reads no override either
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  letta:\n    image: letta/letta:latest\n")
    assert compose_file.check_pinned(path)[2] == "0.16.2"


@pytest.mark.parametrize("line, value", [
    ("TAG=0.16.2 # pinned", "0.16.2"),
    ("TAG=0.16.2\t# pinned", "0.16.2"),
    ('TAG="0.16.2" # pinned', "0.16.2"),
    ("TAG='0.16.2' # pinned", "0.16.2"),
    ("export TAG=0.16.2", "0.16.2"),
    ("TAG=a#b", "a#b"),  # no whitespace before #: part of the value, as in Compose
    ('TAG="a # b"', "a # b"),
])
def test_env_file_values_as_compose_reads_them(tmp_path, line, value):
    (tmp_path / ".env").write_text(f"# comment\n{line}\n")
    assert compose_file.env_file_values(tmp_path / ".env") == {"TAG": value}


def test_a_tag_with_an_inline_comment_in_env_is_accepted(tmp_path, capsys):
    path = compose(tmp_path, "letta/letta:${TAG}")
    (tmp_path / ".env").write_text("TAG=0.16.2 # pinned\n")
    code, out, err = gate(capsys, "--compose", str(path), "--from", "0.16.2")
    assert code == 0 and "unchanged (0.16.2)" in out, err


def test_unchanged_tag_still_writes_the_report_ci_cats(tmp_path, capsys, git):
    path = compose(tmp_path)
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "one")
    git(tmp_path, "add", "docker-compose.yml")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "two")
    (tmp_path / "README").write_text("x")
    git(tmp_path, "add", "README")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "three")
    code, out, err = gate(capsys, "--compose", str(path), "--report", str(tmp_path / "letta-report"))
    assert code == 0, err
    md = (tmp_path / "letta-report.md").read_text()
    assert "unchanged (0.16.2) since HEAD~1: nothing to check" in md
    report = load_report(tmp_path / "letta-report.json")
    assert report.ok and report.outcomes == [] and "nothing to check" in report.note
    assert "nothing to check" in (tmp_path / "letta-report.html").read_text()
    assert json.loads((tmp_path / "letta-report.json").read_text())["note"] == report.note


def test_the_override_at_the_base_ref_is_read_too(tmp_path, capsys, git):
    path = compose(tmp_path)
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  letta:\n    image: letta/letta:0.16.1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "one")
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  letta:\n    image: letta/letta:0.16.2\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "two")
    assert compose_file.letta_image_tag(path)[2] == "0.16.2"
    from pytest_letta_compat.report.gate import version_at_ref

    assert version_at_ref(path, "HEAD~1") == "0.16.1"


def test_gate_report_path_that_cannot_be_written(tmp_path, capsys):
    code, out, err = gate(capsys, "--compose", str(compose(tmp_path)), "--from", "0.16.1", "--report",
                          "/proc/nope/r.md")
    assert code == 2 and "--report /proc/nope/r.md" in err and len(err.strip().splitlines()) == 1


def test_yaml_errors_name_the_place_not_the_line(tmp_path):
    path = tmp_path / "docker-compose.yml"
    path.write_text("services:\n  letta:\n    environment:\n      OPENAI_API_KEY: sk-planted: oops\n")
    with pytest.raises(compose_file.ComposeError) as info:
        compose_file.load(path)
    assert "line 4" in str(info.value) and "sk-planted" not in str(info.value)


@pytest.mark.parametrize("name, before, after", [
    ("requirements.txt", "letta==0.16.8\nhttpx==0.28.1\n", "letta==0.34.12\nhttpx==0.28.1\n"),
    ("pyproject.toml", '[project]\nname = "ops"\ndependencies = ["letta[server]==0.16.8"]\n',
     '[project]\nname = "ops"\ndependencies = ["letta[server]==0.34.12"]\n'),
])
def test_a_letta_pin_that_crosses_into_letta_code_replaces_the_server(tmp_path, capsys, git, monkeypatch, name,
                                                                      before, after):
    """PyPI's `letta` is the server up to 0.16.8 and Letta Code from 0.32.13: a bot's bump
    letta==0.16.8 -> 0.34.12 is not a Letta Code upgrade but another program (issue #25, row 1)."""
    from pytest_letta_compat.report import letta_code_gate

    # were it taken for a Letta Code bump, the gate would run one (and pass): say so at once
    monkeypatch.setattr(letta_code_gate, "run_letta_code_gate", lambda *a, **k: 0)
    compose(tmp_path, "letta/letta:0.16.8")
    git(tmp_path, "init", "-q")
    (tmp_path / name).write_text(before)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "server 0.16.8")
    (tmp_path / name).write_text(after)
    git(tmp_path, "commit", "-qam", "bump letta")
    code, out, _ = gate(capsys, "--compose", str(tmp_path / "docker-compose.yml"),
                        "--report", str(tmp_path / "gate.json"))
    assert code == 1
    assert "NOT compatible" in out and "replaces the Letta server with Letta Code" in out
    assert f"{name} moves `letta` from 0.16.8 to 0.34.12" in out
    assert "replaces the Letta server" in load_report(tmp_path / "gate.json").note


def test_a_letta_code_pin_moving_within_letta_code_is_not_called_a_replacement(tmp_path, capsys, git, monkeypatch):
    from pytest_letta_compat.report import letta_code_gate

    compose(tmp_path, "letta/letta:0.16.8")
    git(tmp_path, "init", "-q")
    (tmp_path / "requirements.txt").write_text("letta==0.32.19\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "Letta Code 0.32.19")
    (tmp_path / "requirements.txt").write_text("letta==0.34.12\n")
    git(tmp_path, "commit", "-qam", "bump")
    assert letta_code_gate.server_replaced(tmp_path / "docker-compose.yml", "HEAD~1") is None


def test_a_repository_with_one_commit_is_told_what_base_ref_to_give(tmp_path, capsys, git):
    compose(tmp_path, "letta/letta:0.16.8")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "the first commit")
    code, out, err = gate(capsys, "--compose", str(tmp_path / "docker-compose.yml"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--base-ref HEAD~1 names no commit" in err and "single commit" in err and "--base-ref origin/main" in err
    assert "git could not list" not in err
