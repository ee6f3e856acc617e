"""The operator's compose file: a Letta image that can move is refused before anything starts
(the incident's root cause), and the copy the suite runs never touches the operator's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_letta_compat.backends.docker.compose_copy import suite_copy
from pytest_letta_compat.matrix import compose_file as compose
from pytest_letta_compat.matrix.compose_file import UnpinnedImageError, check_pinned, letta_image_tag

STACK = """\
services:
  letta-db:
    image: {db}
    environment:
      POSTGRES_USER: letta
      POSTGRES_PASSWORD: letta
    volumes:
      - ./pgdata:/var/lib/postgresql/data
      - ./init.sql:/docker-entrypoint-initdb.d/init.sql
  letta:
    image: {letta}
    container_name: letta-server
    restart: unless-stopped
    ports:
      - "8283:8283"
    environment:
      LETTA_PG_URI: postgresql://letta:letta@letta-db:5432/letta
      SECURE: "true"
      LETTA_SERVER_PASSWORD: pa$$word
"""


@pytest.fixture
def write_compose(tmp_path: Path):
    def write(letta: str, db: str = "pgvector/pgvector:pg15", text: str = STACK) -> Path:
        path = tmp_path / "docker-compose.letta.yml"
        path.write_text(text.format(letta=letta, db=db))
        return path

    return write


@pytest.mark.parametrize("image, why", [
    ("letta/letta:latest", "uses the tag `latest`, which moves to every new release"),
    ("letta/letta", "has no tag, so Docker runs `latest`"),
    ("letta/letta:0.16", "uses the tag `0.16`, which is not a Letta release and can move"),
    ("localhost:5000/letta/letta", "has no tag"),
])
def test_a_letta_image_that_can_move_is_refused_naming_the_service_and_how_to_pin(write_compose, image, why):
    path = write_compose(image)
    with pytest.raises(UnpinnedImageError) as refused:
        check_pinned(path)
    message = str(refused.value)
    assert f"service `letta` runs `{image}`, which {why}" in message
    assert "Pin it to a release, e.g. `image: " in message and "@sha256:<digest>" in message
    assert str(path) in message and "Nothing was started" in message


@pytest.mark.parametrize("image, version", [
    ("letta/letta:0.16.2", "0.16.2"),
    ("letta/letta:0.16.2@sha256:" + "a" * 64, "0.16.2"),
    ("letta/letta@sha256:" + "b" * 64, None),  # pinned, but names no release
    ("localhost:5000/letta/letta:0.11.3", "0.11.3"),
])
def test_a_release_tag_or_a_digest_is_accepted(write_compose, image, version):
    assert check_pinned(write_compose(image)) == ("letta", image, version)


def test_other_services_may_use_a_named_tag_but_not_latest(write_compose):
    assert check_pinned(write_compose("letta/letta:0.16.2", db="ankane/pgvector:v0.5.1"))[2] == "0.16.2"
    with pytest.raises(UnpinnedImageError, match=r"service `letta-db` runs `pgvector/pgvector:latest`"):
        check_pinned(write_compose("letta/letta:0.16.2", db="pgvector/pgvector:latest"))


def test_variables_are_substituted_as_compose_does(write_compose, monkeypatch):
    path = write_compose("letta/letta:${LETTA_TAG:-latest}")
    monkeypatch.delenv("LETTA_TAG", raising=False)
    with pytest.raises(UnpinnedImageError, match=r"runs `letta/letta:latest`"):
        check_pinned(path)
    (path.parent / ".env").write_text("LETTA_TAG=0.11.3\n")
    assert letta_image_tag(path) == ("letta", "letta/letta:0.11.3", "0.11.3")
    monkeypatch.setenv("LETTA_TAG", "0.16.2")  # the environment wins over .env
    assert letta_image_tag(path)[2] == "0.16.2"


def test_a_file_without_a_letta_service_says_what_it_looked_for(write_compose):
    path = write_compose("nginx:1.27")
    with pytest.raises(compose.ComposeError, match=r"no service runs a Letta server image .* services: letta-db, letta"):
        letta_image_tag(path)


def test_the_suites_copy_keeps_the_operators_ports_data_and_names_untouched(write_compose):
    path = write_compose("letta/letta:0.16.2")
    (path.parent / "init.sql").write_text("SELECT 1;\n")
    labels = {"org.letta-compat.session": "abc"}
    doc, notes = suite_copy(compose.load(path), path.parent, labels=labels,
                                    publish={"letta-db": ["5432"]}, environment={"letta": {"OPENAI_API_KEY": "k"}},
                                    images={"letta": "letta-compat/letta:0.16.2"})
    letta, db = doc["services"]["letta"], doc["services"]["letta-db"]
    assert "container_name" not in letta and letta["restart"] == "no"
    assert letta["ports"] == ["127.0.0.1::8283"] and db["ports"] == ["127.0.0.1::5432"]
    # the data directory becomes a throwaway volume; the init script is still mounted
    assert db["volumes"] == [{"type": "volume", "target": "/var/lib/postgresql/data"},
                             f"{path.parent / 'init.sql'}:/docker-entrypoint-initdb.d/init.sql"]
    assert notes == ["service `letta-db`: the bind mount ./pgdata -> /var/lib/postgresql/data is replaced by a "
                     "throwaway volume"]
    assert letta["environment"]["LETTA_SERVER_PASSWORD"] == "pa$$word"  # `$$` again: compose reads it as `$`
    assert letta["environment"]["OPENAI_API_KEY"] == "k" and letta["image"] == "letta-compat/letta:0.16.2"
    assert letta["labels"] == labels and doc["networks"]["default"]["labels"] == labels


def test_the_plugin_refuses_a_latest_compose_file_before_anything_starts(pytester, write_compose):
    path = write_compose("letta/letta:latest")
    pytester.makepyfile(test_inner="""
        def test_would_start_a_server(letta_server):
            open("server-was-started", "w").close()
    """)
    result = pytester.runpytest_subprocess("--letta-compose", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "service `letta` runs `letta/letta:latest`, which uses the tag `latest`" in err
    assert "Traceback" not in err
    assert not (pytester.path / "server-was-started").exists()


def test_a_pinned_compose_file_becomes_the_runs_server_entry(pytester, write_compose, write_matrix, entry_tests):
    path = write_compose("letta/letta:0.16.2")
    write_matrix("matrix", '[[server]]\nversion = "0.11.3"\n\n[[upgrade]]\nfrom = "0.11.3"\nto = "0.16.2"\n')
    result = pytester.runpytest("--collect-only", "--letta-matrix", "matrix.toml", "--letta-compose", str(path))
    out = result.stdout.str()
    assert "test_server[server-0.16.2]" in out and "test_upgrade[upgrade-0.11.3-to-0.16.2]" in out
    assert "server-0.11.3" not in out
    assert "servers 0.16.2; upgrades 0.11.3-to-0.16.2; " in out and "backend docker" in out
