"""Reading an operator's compose stack for `upgrade --compose`: where the release is pinned, the
database and its credentials, the project name, and the refusals (one line each). No Docker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from pytest_letta_compat.errors import LettaCompatError, redact
from pytest_letta_compat.operations.compose_deployment import PinSource, read_deployment
from pytest_letta_compat.operations.compose_upgrade import ComposeUpgrade, ComposeUpgradeRequest, rewrite_pin

OFFICIAL_LIKE = """services:
  letta_db:
    image: ankane/pgvector:v0.5.1
    networks:
      default:
        aliases:
          - pgvector_db
          - letta-db
    environment:
      - POSTGRES_USER=${LETTA_PG_USER:-letta}
      - POSTGRES_PASSWORD=${LETTA_PG_PASSWORD:-letta}
  letta_server:
    image: letta/letta:${LETTA_VERSION}   # pinned in .env
    ports:
      - "8283:8283"
    env_file:
      - .env
    environment:
      - LETTA_PG_URI=${LETTA_PG_URI:-postgresql://${LETTA_PG_USER:-letta}:${LETTA_PG_PASSWORD:-letta}@${LETTA_DB_HOST:-letta-db}:5432/${LETTA_PG_DB:-letta}}
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("COMPOSE_PROJECT_NAME", "LETTA_VERSION", "LETTA_PG_URI", "LETTA_PG_PASSWORD", "LETTA_PG_USER"):
        monkeypatch.delenv(name, raising=False)


def stack(tmp_path: Path, compose: str = OFFICIAL_LIKE, env: str = "LETTA_VERSION=0.11.3\n") -> Path:
    (tmp_path / "compose.yaml").write_text(compose)
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=My_Letta\nLETTA_PG_PASSWORD=s3cret-pw\n" + env)
    return tmp_path / "compose.yaml"


def test_reads_the_official_layout_with_the_pin_in_dotenv(tmp_path):
    d = read_deployment(stack(tmp_path))
    assert (d.service, d.version, d.project) == ("letta_server", "0.11.3", "my_letta")
    assert (d.pin.file.name, d.pin.line, d.pin.variable) == (".env", 3, "LETTA_VERSION")
    assert (d.database.service, d.database.host, d.database.user, d.database.password, d.database.name) == (
        "letta_db", "letta-db", "letta", "s3cret-pw", "letta")


def test_a_literal_pin_is_rewritten_in_place_and_kept_beside(tmp_path):
    file = stack(tmp_path, OFFICIAL_LIKE.replace("letta/letta:${LETTA_VERSION}", "letta/letta:v0.11.3"), env="")
    d = read_deployment(file)
    assert (d.pin.file, d.pin.line, d.version) == (file.resolve(), 13, "0.11.3")
    backup = tmp_path / "backup"
    backup.mkdir()
    rewrite_pin(d, "0.16.8", backup)
    lines = file.read_text().splitlines()
    assert lines[12] == "    image: letta/letta:v0.16.8   # pinned in .env"  # only the release changed
    assert (backup / "pin.before-upgrade").read_text() == (
        f"{file.resolve()}:13:     image: letta/letta:v0.11.3   # pinned in .env\n")


@pytest.mark.parametrize("env, to, expected", [
    ("LETTA_VERSION=latest\n", "0.16.8", "names no Letta release"),
    ("LETTA_VERSION=0.99.0\n", "0.16.8", "names no Letta release"),
    ("LETTA_VERSION=0.16.2\n", "0.11.3", "downgrade"),
    ("LETTA_VERSION=0.16.8\n", "0.16.8", "already runs Letta 0.16.8"),
    ("LETTA_VERSION=0.16.2\n", "1.0.0", "is not a Letta server release"),
    ("", "0.16.8", "does not set"),
])
def test_refusals_are_one_line(tmp_path, env, to, expected):
    with pytest.raises(LettaCompatError) as caught:
        ComposeUpgrade(ComposeUpgradeRequest(stack(tmp_path, env=env), to, tmp_path / "b", tmp_path / "cache"))
    message = str(caught.value)
    assert expected in message and "\n" not in message and "s3cret-pw" not in message


def test_a_server_on_its_embedded_database_is_refused(tmp_path):
    compose = "services:\n  letta:\n    image: letta/letta:0.11.3\n"
    with pytest.raises(LettaCompatError, match="embedded database"):
        read_deployment(stack(tmp_path, compose, env=""))


@given(before=st.text(alphabet="abc :/-_#\"'", max_size=20), after=st.text(alphabet=" :/-#\"'", max_size=20),
       v=st.booleans())
def test_rewriting_changes_the_release_and_nothing_else(before, after, v):
    line = f"{before}letta/letta:{'v' if v else ''}0.11.3{after}"
    new = PinSource(Path(".env"), 1, line).rewritten("0.11.3", "0.16.8")
    assert new == f"{before}letta/letta:{'v' if v else ''}0.16.8{after}"


def test_a_failing_compose_call_is_one_line_without_its_traceback(tmp_path, monkeypatch):
    from pytest_letta_compat.operations import compose_commands

    monkeypatch.setattr(compose_commands, "compose_command", lambda: ["docker-compose"])
    commands = compose_commands.StackCommands(read_deployment(stack(tmp_path)), tmp_path / "run.log")
    script = ("import sys; print('Traceback (most recent call last):\\n  File \"x.py\", line 1\\n"
              "docker.errors.DockerException: Error while fetching server API version'); sys.exit(1)")
    with pytest.raises(LettaCompatError) as caught:
        commands.run([sys.executable, "-c", script], "docker compose ps")
    message = str(caught.value)
    assert "Traceback" not in message and "\n" not in message
    assert "Error while fetching server API version" in message and "Is Docker running here" in message
    assert "Traceback" in (tmp_path / "run.log").read_text()  # the whole output stays in the log


def test_the_pin_in_a_private_dotenv_is_rewritten_and_stays_private(tmp_path):
    file = stack(tmp_path)
    (tmp_path / ".env").chmod(0o600)
    backup = tmp_path / "backup"
    backup.mkdir()
    rewrite_pin(read_deployment(file), "0.16.8", backup)
    assert (tmp_path / ".env").read_text().splitlines()[2] == "LETTA_VERSION=0.16.8"
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    kept = (backup / "pin.before-upgrade").read_text()
    assert kept.endswith(":3: LETTA_VERSION=0.11.3\n") and "s3cret-pw" not in kept  # the line, never the passwords


def test_the_stacks_encryption_key_goes_to_the_request_not_into_our_environment(tmp_path):
    key = "stack-key-" + "5e1f" * 6
    upgrade = ComposeUpgrade(ComposeUpgradeRequest(stack(tmp_path, env=f"LETTA_VERSION=0.11.3\nLETTA_ENCRYPTION_KEY={key}\n"),
                                                   "0.16.8", tmp_path / "b", tmp_path / "cache"))
    before = dict(os.environ)
    request = upgrade._upgrade_request("postgresql://letta:s3cret-pw@127.0.0.1:9/letta", "http://127.0.0.1:9")
    assert request.encryption_key == key
    assert request.encryption_key_source == "service `letta_server` of compose.yaml"
    assert dict(os.environ) == before  # alembic gets the key in its own environment, not in ours
    assert key not in repr(request) and key not in redact(f"alembic said {key}")
