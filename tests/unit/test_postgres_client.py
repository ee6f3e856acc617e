"""The one PostgreSQL client (postgres/client.py) and the one init.sql layout (postgres/layout.py):
passwords never shown and never on a command line; dumps restore with their rows and their layout;
schema inspection and the fix-ups see the same sequence lag. The database tests run on a real
embedded PostgreSQL+pgvector cluster (no Letta server)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
pytest.importorskip("hypothesis", reason="the property-based tests need the test extra: pip install -e '.[test]'")
from hypothesis import assume, given, strategies as st

from pytest_letta_compat.errors import LettaCompatError
from pytest_letta_compat.operations.database import Layout, LettaDatabase
from pytest_letta_compat.operations.fixups import SequenceBehind, run_fixups
from pytest_letta_compat.postgres.binaries import PostgresBinaries
from pytest_letta_compat.postgres.client import dsn_params, pg_dump, run_pg_tool, shown_dsn
from pytest_letta_compat.postgres.cluster import PostgresCluster
from pytest_letta_compat.schema.inspect import read_schema

SCHEME = st.from_regex(r"[a-z][a-z0-9+.-]{0,12}", fullmatch=True)
WORD = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
PASSWORD = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=4, max_size=24)


@given(scheme=SCHEME, user=WORD, password=PASSWORD, host=WORD)
def test_a_url_password_is_masked_whatever_the_scheme(scheme, user, password, host):
    """``postgresql://``, a mistyped ``postgresq://``, ``http://admin:pw@host``: never the password."""
    url = f"{scheme}://{user}:{password}@{host}:5432/letta"
    # a password that is itself part of what may be shown (the masked URL, the message around it)
    assume(password not in f"could not connect to {scheme}://{user}:***@{host}:5432/letta (timeout)")
    shown = shown_dsn(f"could not connect to {url} (timeout)")
    assert password not in shown
    assert f"@{host}:5432/letta" in shown  # where it points stays readable


@given(password=st.from_regex(r"[A-Za-z0-9!#$%^*()_+-]{4,20}", fullmatch=True))
def test_a_keyword_dsn_password_is_masked(password):
    assume(password not in "host=db user=letta password=*** dbname=letta")
    assert password not in shown_dsn(f"host=db user=letta password={password} dbname=letta")


def test_a_mistyped_dsn_is_one_line_naming_the_option_without_its_password():
    with pytest.raises(LettaCompatError) as failure:
        dsn_params("postgresq://letta:Hunter2-pw@db:5432/letta")
    message = str(failure.value)
    assert message.startswith("--dsn 'postgresq://letta:***@db:5432/letta' is not a PostgreSQL DSN")
    assert "Hunter2-pw" not in message and "\n" not in message


def test_letta_spellings_of_a_dsn_are_read():
    params = dsn_params("postgresql+pg8000://letta:pw-1234@db:5433/letta")
    assert params == {"user": "letta", "password": "pw-1234", "host": "db", "port": "5433", "dbname": "letta"}


@pytest.mark.parametrize("query, sslmode", [("ssl=require", "require"), ("ssl=disable", "disable"),
                                           ("ssl=true", "require"), ("ssl=False", "disable"),
                                           ("sslmode=verify-full&ssl=require", "verify-full")])
def test_asyncpg_ssl_in_a_letta_pg_uri_is_read_as_sslmode(query, sslmode):
    """An operator pastes LETTA_PG_URI as Letta (asyncpg) reads it: ``?ssl=require`` is libpq's sslmode."""
    params = dsn_params(f"postgresql+asyncpg://letta:pw-1234@db:5432/letta?{query}&connect_timeout=5")
    assert params["sslmode"] == sslmode and params["connect_timeout"] == "5" and "ssl" not in params


def fake_tool(bin_dir: Path, body: str) -> None:
    tool = bin_dir / "pg_dump"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


def test_client_tools_get_the_password_through_the_environment_only(tmp_path):
    fake_tool(tmp_path, 'echo "argv: $*"\necho "PGPASSWORD=$PGPASSWORD"\n')
    out = run_pg_tool("pg_dump", ["-Fc"], dsn="postgresql://letta:Zq9-secret@db.internal:6543/letta", bin_dir=tmp_path)
    argv = out.splitlines()[0]
    assert "Zq9-secret" not in argv
    assert "host=db.internal" in argv and "port=6543" in argv and "dbname=letta" in argv and argv.endswith("-Fc")
    assert "PGPASSWORD=Zq9-secret" in out


def test_a_failing_client_tool_is_one_masked_error(tmp_path):
    fake_tool(tmp_path, 'echo "connection to postgresql://letta:$PGPASSWORD@db/letta refused" >&2\nexit 1\n')
    with pytest.raises(LettaCompatError) as failure:
        run_pg_tool("pg_dump", [], dsn="postgresql://letta:Zq9-other@db/letta", bin_dir=tmp_path)
    assert str(failure.value).startswith("pg_dump failed (exit 1): connection to postgresql://letta:***@db/letta")
    assert "Zq9-other" not in str(failure.value)


# -- on a real cluster ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    pg = PostgresCluster(PostgresBinaries.embedded(16)).start()
    yield pg
    pg.cleanup()


def layout_of(pg: PostgresCluster, name: str) -> tuple:
    with pg.connect(name) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")}
        vector = conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                              "WHERE e.extname = 'vector'").fetchone()
        path = conn.execute("SHOW search_path").fetchone()[0]
    return schemas, vector and vector[0], path


INIT_SQL = ({"letta"}, "letta", "letta")  # schema letta holding vector, on the search_path, no public


def test_a_new_database_is_laid_out_as_init_sql(cluster):
    cluster.create_database("fresh")
    assert layout_of(cluster, "fresh") == INIT_SQL


def test_a_dump_restores_with_its_rows_and_its_layout(cluster, tmp_path):
    cluster.create_database("source")
    with cluster.connect("source") as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text, embedding vector(3))")
        conn.execute("INSERT INTO notes (body, embedding) VALUES ('kept', '[1,2,3]'), ('also kept', '[4,5,6]')")
    dump = tmp_path / "source.dump"
    pg_dump(cluster.dsn("source"), dump)  # the embedded tools, as for an operator's database
    cluster.restore_database("copy", dump)
    assert layout_of(cluster, "copy") == INIT_SQL
    with cluster.connect("copy") as conn:
        assert conn.execute("SELECT body, embedding::text FROM notes ORDER BY id").fetchall() == [
            ("kept", "[1,2,3]"), ("also kept", "[4,5,6]")]


def test_an_operators_database_is_recreated_with_the_same_layout(cluster):
    cluster.create_database("operators")
    database = LettaDatabase(cluster.dsn("operators"))
    database.recreate(Layout("letta", "letta"), lay_out=True)
    assert layout_of(cluster, "operators") == INIT_SQL


def test_schema_inspection_and_the_fixups_see_the_same_sequence_lag(cluster):
    """After a bulk load without setval, the next message id is taken: one detector says so
    to both the schema check and the fix-up (and neither when the sequence is ahead)."""
    cluster.create_database("lagging")
    with cluster.connect("lagging") as conn:
        conn.execute("CREATE SEQUENCE message_seq_id")
        conn.execute("CREATE TABLE alembic_version (version_num text)")
        conn.execute("CREATE TABLE agents (id text)")
        conn.execute("CREATE TABLE messages (id text, sequence_id bigint NOT NULL DEFAULT nextval('message_seq_id'))")
        conn.execute("INSERT INTO messages (id, sequence_id) SELECT 'm' || n, n FROM generate_series(1, 5) n")
        assert read_schema(conn).sequence_lag == {"messages.sequence_id": ("message_seq_id", 1, 5)}
        assert "would hand out 1, but messages already use ids up to 5" in SequenceBehind().detect(conn)
        conn.execute("SELECT setval('message_seq_id', 5)")
        assert read_schema(conn).sequence_lag == {}
        assert SequenceBehind().detect(conn) is None


def test_no_password_is_left_in_the_environment_of_this_process(cluster):
    assert cluster.letta_password not in "".join(os.environ.values())


def test_an_interrupted_concurrent_index_build_is_read_as_invalid(cluster):
    """What a killed CREATE INDEX CONCURRENTLY leaves behind is seen by the schema check's reader."""
    cluster.create_database("halfindexed")
    with cluster.connect("halfindexed") as conn:
        conn.execute("CREATE TABLE agents (id text, name text)")
        conn.execute("INSERT INTO agents VALUES ('a', 'twin'), ('b', 'twin')")
        conn.execute("CREATE INDEX CONCURRENTLY ix_ok ON agents (id)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY uix_name ON agents (name)")
        conn.execute("CREATE TABLE alembic_version (version_num text)")
        live = read_schema(conn)
    indexes = live.tables["agents"].indexes
    assert indexes["ix_ok"].valid and not indexes["uix_name"].valid


def test_the_fixup_rebuilds_an_index_left_invalid_and_then_finds_nothing(cluster):
    """The upgrade's fix-ups repair what a killed 0.16.7 migration leaves (an INVALID index), once."""
    cluster.create_database("reindexed")
    with cluster.connect("reindexed") as conn:
        conn.execute("CREATE TABLE alembic_version (version_num text)")
        conn.execute("CREATE TABLE agents (id text)")
        conn.execute("CREATE TABLE messages (id text, updated_at timestamptz, sequence_id bigint)")
        conn.execute("CREATE INDEX idx_messages_on_updated_at ON messages (updated_at)")
    with cluster.connect("reindexed", admin=True) as admin:  # as a killed build leaves it
        admin.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'letta.idx_messages_on_updated_at'::regclass")
    database = LettaDatabase(cluster.dsn("reindexed"))
    first = {r.name: r for r in run_fixups(database, apply=True)}["indexes left INVALID"]
    assert first.applied and first.drift.startswith("idx_messages_on_updated_at: INVALID")
    with cluster.connect("reindexed") as conn:
        assert read_schema(conn).tables["messages"].indexes["idx_messages_on_updated_at"].valid
    again = {r.name: r for r in run_fixups(database, apply=True)}["indexes left INVALID"]
    assert again.drift is None and not again.applied


def test_the_fixup_gives_an_emptied_archive_its_agents_embedding_and_leaves_the_others(cluster):
    """Letta 0.13.0's migration gives an archive with no passage Letta's hosted letta-free; only
    such an archive whose agents agree on an embedding of their own gets theirs, once."""
    own = '{"embedding_endpoint_type": "openai", "embedding_model": "fake-embedding", "embedding_dim": 64}'
    other = '{"embedding_endpoint_type": "openai", "embedding_model": "other-embedding", "embedding_dim": 64}'
    free = ('{"embedding_endpoint_type": "openai", "embedding_model": "letta-free", '
            '"embedding_endpoint": "https://embeddings.letta.com/", "embedding_dim": 1536}')
    cluster.create_database("archives")
    with cluster.connect("archives") as conn:
        conn.execute("CREATE TABLE alembic_version (version_num text)")
        conn.execute("CREATE TABLE messages (id text, updated_at timestamptz, sequence_id bigint)")
        conn.execute("CREATE TABLE agents (id text, is_deleted bool DEFAULT false, embedding_config json)")
        conn.execute("CREATE TABLE archives (id text, is_deleted bool DEFAULT false, embedding_config json)")
        conn.execute("CREATE TABLE archives_agents (agent_id text, archive_id text)")
        conn.execute("CREATE TABLE archival_passages (id text, archive_id text, is_deleted bool DEFAULT false)")
        conn.execute("INSERT INTO agents (id, embedding_config) VALUES ('emptied', %s), ('filled', %s), "
                     "('on-free', %s), ('shared-1', %s), ('shared-2', %s)", (own, own, free, own, other))
        conn.execute("INSERT INTO archives (id, embedding_config) VALUES ('a-emptied', %s), ('a-filled', %s), "
                     "('a-on-free', %s), ('a-shared', %s)", (free, free, free, free))
        conn.execute("INSERT INTO archives_agents VALUES ('emptied', 'a-emptied'), ('filled', 'a-filled'), "
                     "('on-free', 'a-on-free'), ('shared-1', 'a-shared'), ('shared-2', 'a-shared')")
        conn.execute("INSERT INTO archival_passages VALUES ('p', 'a-filled', false), ('gone', 'a-emptied', true)")
    database = LettaDatabase(cluster.dsn("archives"))
    first = {r.name: r for r in run_fixups(database, apply=True)}["archive embedding"]
    assert first.applied and first.drift.startswith("1 empty archive(s) embed with Letta's hosted letta-free")
    with cluster.connect("archives") as conn:
        models = dict(conn.execute("SELECT id, embedding_config::jsonb->>'embedding_model' FROM archives").fetchall())
    assert models == {"a-emptied": "fake-embedding", "a-filled": "letta-free", "a-on-free": "letta-free",
                      "a-shared": "letta-free"}
    again = {r.name: r for r in run_fixups(database, apply=True)}["archive embedding"]
    assert again.drift is None and not again.applied
