"""Issue 13, item 2: every reader of outside input, fed anything, gives a result or our own
error type (a LettaCompatError subclass), never another exception, and a secret planted in
the input never reaches the error message.

Inputs are drawn both at random and "nearly right" (the real keys with values of any type),
which is where readers break. Planted secrets: a DSN/URL password (any scheme, also the
mistyped ``postgresq://``), a ``password=`` keyword value, and registered API keys.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import yaml
import pytest
pytest.importorskip("hypothesis", reason="the property-based tests need the test extra: pip install -e '.[test]'")
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_letta_compat.errors import LettaCompatError, redact, register_secret
from pytest_letta_compat.backends.docker.compose_copy import suite_copy
from pytest_letta_compat.matrix import compose_file
from pytest_letta_compat.matrix.model import Matrix, parse_matrix, load_matrix
from pytest_letta_compat.operations import agentfile
from pytest_letta_compat.operations.backup import load_backup, read_agent, read_manifest
from pytest_letta_compat.report.grid import load_report, merge_reports

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

API_KEY = "sk-planted-api-key-0123456789"
register_secret(API_KEY)  # what LettaAPI does with --api-key / $LETTA_API_KEY
PASSWORD = "Pl4nted-pw"
PLANTED = [f"postgresql://letta:{PASSWORD}@db:5432/letta", f"postgresq://u:{PASSWORD}@localhost/letta",
           f"http://admin:{PASSWORD}@letta.internal:8283", f"host=db password={PASSWORD} dbname=letta",
           f"postgresql+pg8000://letta:{PASSWORD}@db/letta", API_KEY, f"Bearer {API_KEY}"]
SECRETS = (PASSWORD, API_KEY)

text = st.text(max_size=30) | st.sampled_from(PLANTED)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def assert_ours(call, *args, **kwargs):
    """``call`` returns, or raises a LettaCompatError whose message holds no planted secret."""
    try:
        return call(*args, **kwargs)
    except LettaCompatError as exc:
        message = str(exc)
        for secret in SECRETS:
            assert secret not in message, message
        return None


def mostly(right: st.SearchStrategy) -> st.SearchStrategy:
    """Nine times in ten a right-shaped value, else anything."""
    return st.sampled_from(range(10)).flatmap(lambda i: json_values if i == 9 else right)


def near(keys: dict[str, st.SearchStrategy], optional: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Objects with the real keys (``optional`` ones sometimes left out), each value mostly
    right-shaped; one time in ten any subset of the keys, with any values."""
    whole = st.fixed_dictionaries({k: mostly(v) for k, v in keys.items() if k not in optional},
                                  optional={k: mostly(v) for k, v in keys.items() if k in optional})
    loose = st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()})
    return st.sampled_from(range(10)).flatmap(lambda i: loose if i == 9 else whole)


# -- matrix TOML ----------------------------------------------------------------------------------
versions_ = mostly(st.sampled_from(["0.11.3", "0.12.1", "0.16.2", "0.16.8"])) | st.sampled_from(["0.99.0", "", "latest"])
matrix_docs = near({
    "name": text, "backend": st.sampled_from(["native", "docker", "native", "docker", "podman"]),
    "postgres": near({"version": st.sampled_from([16, 18]) | st.integers(10, 20), "bin_dir": text,
                      "image": st.just("pgvector/pgvector:pg15")}, optional=("version", "bin_dir", "image")),
    "server": st.lists(near({"version": versions_, "backend": st.just("native"), "secure": st.booleans()},
                            optional=("backend", "secure")), max_size=3),
    "upgrade": st.lists(near({"from": versions_, "to": versions_}), max_size=2),
    "letta_code": st.lists(near({"version": st.sampled_from(["0.25.9", "99.0.0", "0.32.13"]) | text}), max_size=2),
    "known_incompatibility": st.lists(near({"check": st.sampled_from(["smoke", "api", "nope"]),
                                            "reason": text, "server": st.sampled_from(["<0.16.4", ">=", "x"]),
                                            "letta_code": st.sampled_from(["<0.20", "bad"])},
                                           optional=("server", "letta_code")), max_size=2),
}, optional=("name", "backend", "postgres", "letta_code", "known_incompatibility")
) | st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@SETTINGS
@given(doc=matrix_docs, require=st.booleans())
def test_parse_matrix_gives_a_matrix_or_a_matrix_error(doc, require):
    result = assert_ours(parse_matrix, doc, Path("m.toml"), require_entries=require)
    assert result is None or isinstance(result, Matrix)


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | matrix_docs.map(lambda d: json.dumps(d).encode()))
def test_load_matrix_of_any_bytes(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.toml"
        path.write_bytes(raw)
        assert_ours(load_matrix, path)


# -- compose files and .env -----------------------------------------------------------------------
images = st.sampled_from(["letta/letta:0.16.2", "letta/letta:latest", "letta/letta", "letta/letta:${TAG}",
                          "letta/letta:${TAG:-0.16.2}", "letta/letta@sha256:abc", "pgvector/pgvector:pg15",
                          "letta/letta:${TAG:?set TAG}", "${", "letta/letta:0.99.0", "localhost:5000/letta/letta:0.16.2"]) | text
env_maps = st.dictionaries(st.sampled_from(["OPENAI_API_KEY", "LETTA_PG_URI", "SECURE", "LETTA_SERVER_PASSWORD"]),
                           st.sampled_from(PLANTED) | st.sampled_from(["true", "false"]), max_size=3)
services = near({"image": images, "environment": env_maps | env_maps.map(lambda d: [f"{k}={v}" for k, v in d.items()]),
                 "env_file": st.sampled_from([".env", "missing.env", ["a.env"], [{"path": ".env"}], [{}], 3]),
                 "ports": st.lists(st.sampled_from(["8283:8283", "127.0.0.1::8283", {"target": 8283}]), max_size=2),
                 "volumes": st.lists(st.sampled_from(["./data:/var/lib/postgresql/data", "pg:/data"]), max_size=2)},
                optional=("environment", "env_file", "ports", "volumes"))
compose_docs = near({"services": st.dictionaries(st.sampled_from(["letta", "db", "web"]) | st.integers(0, 3),
                                                 services, min_size=1, max_size=3),
                     "volumes": st.dictionaries(st.sampled_from(["pg", "data"]), st.none() | st.just({}), max_size=2)},
                    optional=("volumes",))
compose_docs = mostly(compose_docs)
dotenv_lines = st.lists(
    st.sampled_from(["TAG=0.16.2", "TAG=0.16.2 # pinned", 'TAG="0.16.2"', "TAG='0.16.2' # x", "export TAG=latest",
                     "# comment", "", "NOEQUALS", "=novalue", 'Q="unterminated', "TAG=0.16.2\t#c"])
    | st.sampled_from(PLANTED).map(lambda s: f"OPENAI_API_KEY={s}") | st.text(max_size=20), max_size=6)


def _write_compose(tmp: Path, doc, dotenv: list[str], override) -> Path:
    path = tmp / "docker-compose.yml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    (tmp / ".env").write_text("\n".join(dotenv))
    if override is not None:
        (tmp / "docker-compose.override.yml").write_text(yaml.safe_dump(override))
    return path


@SETTINGS
@given(doc=compose_docs | st.text(max_size=120), dotenv=dotenv_lines, override=st.none() | compose_docs)
def test_compose_readers_give_a_result_or_a_compose_error(doc, dotenv, override):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_compose(Path(tmp), doc, dotenv, override)
        for reader in (compose_file.load, compose_file.letta_image_tag, compose_file.check_pinned):
            assert_ours(reader, path)
        assert_ours(compose_file.compose_matrix, path, None)
        loaded = assert_ours(compose_file.load, path)
        if loaded is not None:
            for name in loaded["services"]:
                assert_ours(compose_file.service_environment, loaded, name, Path(tmp))
            assert_ours(suite_copy, loaded, Path(tmp), labels={"a": "b"}, publish={}, environment={},
                        images={})


@SETTINGS
@given(raw=st.text(max_size=60))
def test_dotenv_values_never_raise(raw):
    assert isinstance(compose_file._dotenv_value(raw), str)


@SETTINGS
@given(raw=st.binary(max_size=120))
def test_env_files_of_any_bytes(raw):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ".env").write_bytes(raw)
        result = assert_ours(compose_file.env_file_values, Path(tmp) / ".env")
        assert result is None or all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


# -- backup manifests -----------------------------------------------------------------------------
records = near({"id": text, "name": text, "format": st.sampled_from(["legacy", "agentfile"]),
                "messages": st.integers(), "messages_by_role": st.dictionaries(text, st.integers(), max_size=2),
                "blocks": st.integers(), "tools": st.integers(), "in_context_ids": st.lists(text, max_size=2),
                "files": st.fixed_dictionaries({}, optional={
                    n: st.just("") | text for n in ("agents/a/agent.json", "agents/a/export.json",
                                                    "agents/a/history.json", "../x", "/etc/passwd", "")}),
                "export_name": text}, optional=("export_name",))
manifests = near({"source_url": text, "server_version": text, "created_at": text,
                  "agents": st.lists(records, max_size=2), "alembic_revision": text,
                  "database_dump": st.sampled_from(["database.dump", "../x.dump", "/etc/passwd"]) | text,
                  "database_dump_sha256": text, "format": st.sampled_from([1, 1, 2, True])},
                 optional=("alembic_revision", "database_dump", "database_dump_sha256"))
manifests = mostly(manifests)


@SETTINGS
@given(manifest=manifests, agent_files=st.dictionaries(st.sampled_from(["agent.json", "export.json", "history.json"]),
                                                       json_values, max_size=3))
def test_backup_readers_give_a_manifest_or_our_error(manifest, agent_files):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "manifest.json").write_text(json.dumps(manifest))
        (d / "agents" / "a").mkdir(parents=True)
        for name, data in agent_files.items():
            (d / "agents" / "a" / name).write_text(json.dumps(data))
        read = assert_ours(read_manifest, d)
        assert_ours(load_backup, d)
        for record in (read.agents if read else []):
            assert_ours(read_agent, d, record)


# -- agent files (legacy 0.11.x and AgentFileSchema) ----------------------------------------------
typed_messages = near({"id": st.sampled_from(["m1", "m2", "m3"]) | text,
                       "message_type": st.sampled_from(["user_message", "assistant_message", "tool_call_message",
                                                        "tool_return_message", "reasoning_message",
                                                        "approval_response_message", "system_message"]),
                       "content": text | st.lists(near({"text": text, "type": st.just("text")}), max_size=2),
                       "date": st.sampled_from(["2025-01-01T00:00:00Z", "9999-12-31T23:59:59.999999", "x"]),
                       "tool_call": near({"tool_call_id": text, "name": text, "arguments": text}),
                       "tool_calls": st.lists(near({"tool_call_id": text, "name": text}), max_size=2),
                       "tool_call_id": text, "tool_return": text, "reasoning": text},
                      optional=("content", "date", "tool_call", "tool_calls", "tool_call_id", "tool_return", "reasoning"))
histories = st.lists(typed_messages, max_size=5) | json_values
raw_messages = near({"role": st.sampled_from(["user", "assistant", "tool", "system"]), "content": text | json_values,
                     "tool_calls": st.lists(near({"id": text}), max_size=2), "tool_call_id": text,
                     "tool_returns": st.lists(near({"status": text}), max_size=1),
                     "created_at": st.sampled_from(["2025-01-01T00:00:00+00:00", "2025-01-01T00:00:00", "bad"])},
                    optional=("tool_calls", "tool_call_id", "tool_returns", "created_at"))
legacy_exports = near({
    "name": text, "core_memory": st.lists(near({"label": text, "value": text, "limit": st.integers()}), max_size=2),
    "tools": st.lists(near({"name": text, "source_code": text}), max_size=2),
    "tags": st.lists(near({"tag": text}), max_size=2), "messages": st.lists(raw_messages, max_size=3),
    "in_context_message_indices": st.lists(st.integers(-2, 5), max_size=3),
    "tool_exec_environment_variables": st.lists(near({"key": text, "value": st.sampled_from(PLANTED)}), max_size=2),
    "system": text, "metadata_": json_values, "llm_config": json_values},
    optional=("tools", "tags", "messages", "in_context_message_indices", "tool_exec_environment_variables",
              "system", "metadata_", "llm_config"))
agent_files_ = near({"agents": st.lists(near({"id": text, "name": text, "messages": st.lists(raw_messages, max_size=3),
                                              "in_context_message_ids": st.lists(text, max_size=2)}), max_size=2),
                     "blocks": json_values, "tools": json_values})
in_context = st.none() | st.lists(st.sampled_from(["m1", "m2", "m3"]) | text, max_size=3) | json_values


@SETTINGS
@given(export=legacy_exports | agent_files_ | json_values, history=st.none() | histories, ids=in_context)
def test_agent_file_readers_give_a_result_or_an_agent_file_error(export, history, ids):
    converted = assert_ours(agentfile.convert_legacy, export, history, in_context_ids=ids)
    if converted is not None:
        json.dumps(converted)  # an agent file we would send must be JSON
        assert agentfile.is_agent_file(converted)
    assert_ours(agentfile.with_full_history, export, history, ids)
    assert_ours(agentfile.legacy_with_full_history, export, history, ids)
    assert_ours(agentfile.agent_of, export)
    assert_ours(agentfile.role_counts, history)


# -- report JSON ----------------------------------------------------------------------------------
outcomes = near({"nodeid": text, "row": st.sampled_from(["server-0.16.2", "upgrade-0.11.3-to-0.16.2", "server-a.b"]) | text,
                 "column": text, "outcome": st.sampled_from(["passed", "failed", "xfailed", "nope"]),
                 "message": text, "log_excerpt": text, "duration": st.floats(allow_nan=False) | st.integers()},
                optional=("message", "log_excerpt", "duration"))
reports = near({"format": st.sampled_from([1, 1, 2, "1"]), "matrix": text, "created": st.floats(allow_nan=False),
                "tests": st.lists(outcomes, max_size=4), "note": text}, optional=("matrix", "created", "note"))
reports = mostly(reports)


@SETTINGS
@given(docs=st.lists(reports | st.text(max_size=40), min_size=1, max_size=3))
def test_load_report_gives_a_report_or_our_error_and_every_report_renders(docs):
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for i, doc in enumerate(docs):
            path = Path(tmp) / f"r{i}.json"
            path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
            report = assert_ours(load_report, path)
            if report is not None:
                loaded.append(report)
        merged = merge_reports(loaded)
        merged.terminal_lines(), merged.to_markdown(), merged.to_html(), json.dumps(merged.to_json())
        for output in merged.write(Path(tmp) / "merged"):  # what we write is masked too
            for secret in SECRETS:
                assert secret not in output.read_text()


# -- DSNs and URLs --------------------------------------------------------------------------------
schemes = st.sampled_from(["postgresql", "postgres", "postgresq", "postgresql+pg8000", "postgresql+asyncpg",
                           "http", "https", "redis", "mysql"])
users = st.text(string.ascii_letters + string.digits + "_.-", min_size=0, max_size=8)
passwords = st.text(string.ascii_letters + string.digits + "!#$%^&*()_+-=[]{};',.<>?~:@/", min_size=4, max_size=16)
hosts = st.text(string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=12)


@SETTINGS
@given(scheme=schemes, user=users, password=passwords, host=hosts, tail=st.sampled_from(["", "/letta", ":5432/letta?sslmode=disable"]))
def test_a_password_in_a_url_of_any_scheme_is_never_shown(scheme, user, password, host, tail):
    secret = "PW" + password  # distinctive: not a piece of the rest of the URL
    url = f"{scheme}://{user}:{secret}@{host}{tail}"
    assume(secret not in f"{scheme}://{user}:***@{host}{tail}")
    from pytest_letta_compat.postgres.client import dsn_params, normalize_dsn, shown_dsn

    for shown in (shown_dsn(url), shown_dsn(normalize_dsn(url)), redact(f"Cannot connect to {url!r}: refused")):
        assert secret not in shown, shown
    assert_ours(dsn_params, url)
    from pytest_letta_compat.rest.client import check_url, shown_url

    assert secret not in shown_url(url)
    assert_ours(check_url, url)


@SETTINGS
@given(password=passwords.filter(lambda p: "'" not in p and "\\" not in p), quoted=st.booleans(),
       before=st.sampled_from(["host=db ", "", "host=db port=5432 ", "dbname=x "]),
       after=st.sampled_from([" dbname=letta", "", " sslmode=disable"]))
def test_a_keyword_password_is_never_shown(password, quoted, before, after):
    secret = "PW" + password.replace(" ", "")
    value = f"'{secret}'" if quoted else secret
    dsn = f"{before}password={value}{after}"
    from pytest_letta_compat.postgres.client import dsn_params, shown_dsn

    assert secret not in shown_dsn(dsn)
    assert_ours(dsn_params, dsn)


@SETTINGS
@given(dsn=st.text(max_size=60) | st.sampled_from(PLANTED))
def test_any_dsn_text_gives_parameters_or_our_error(dsn):
    from pytest_letta_compat.postgres.client import dsn_params

    assert_ours(dsn_params, dsn)
    from pytest_letta_compat.rest.client import check_url

    assert_ours(check_url, dsn)
