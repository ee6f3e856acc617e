"""The readiness rules of ``letta-compat schema check`` on small hand-made schemas."""

from __future__ import annotations

from pytest_letta_compat.schema.compare import check_schema, diff_schemas, type_family
from pytest_letta_compat.schema.expected import ExpectedSchema
from pytest_letta_compat.postgres.client import shown_dsn
from pytest_letta_compat.schema.inspect import LiveColumn, LiveConstraint, LiveIndex, LiveSchema, LiveTable

HEAD = "27de0f58e076"  # 0.16.2


def orm_column(type_="VARCHAR", nullable=True, server_default=None):
    return {"type": type_, "nullable": nullable, "server_default": server_default, "primary_key": False,
            "enum_values": None}


def orm_table(columns, uniques=(), indexes=(), foreign_keys=()):
    return {"columns": columns, "uniques": list(uniques), "indexes": list(indexes), "foreign_keys": list(foreign_keys)}


def expected(**tables) -> ExpectedSchema:
    return ExpectedSchema("0.16.2", HEAD, tables)


def live(revision=HEAD, on_search_path=True, **tables) -> LiveSchema:
    return LiveSchema(schema="letta", revision=revision, on_search_path=on_search_path,
                      tables={"alembic_version": LiveTable(), **tables})


def messages_orm():
    return orm_table({"id": orm_column(nullable=False),
                      "sequence_id": orm_column("BIGINT", nullable=False, server_default="fetched")})


def messages_live(default="nextval('message_seq_id'::regclass)"):
    return LiveTable(columns={"id": LiveColumn("character varying", False, None),
                              "sequence_id": LiveColumn("bigint", False, default)})


def test_orm_and_catalog_spellings_of_one_type_compare_equal():
    assert type_family("VARCHAR(255)") == type_family("character varying") == type_family("TEXT")
    assert type_family("TIMESTAMP WITH TIME ZONE") == type_family("timestamp with time zone")
    assert type_family("FLOAT") == type_family("double precision")
    assert type_family("VECTOR(4096)") == type_family("vector(4096)") != type_family("vector(1536)")
    assert type_family("TIMESTAMP WITHOUT TIME ZONE") != type_family("timestamp with time zone")


def test_matching_database_is_ready():
    report = check_schema(live(messages=messages_live()), expected(messages=messages_orm()))
    assert report.ready and report.problems == [] and report.tables_checked == 1


def test_generated_column_without_default_is_the_409_problem():
    report = check_schema(live(messages=messages_live(default=None)), expected(messages=messages_orm()))
    assert [str(p) for p in report.problems] == [
        "messages.sequence_id: no default (inserts will fail with NOT NULL → HTTP 409)"]


def test_sequence_behind_its_column_is_a_problem():
    database = live(messages=messages_live())
    database.sequence_lag["messages.sequence_id"] = ("message_seq_id", 5, 62)
    (problem,) = check_schema(database, expected(messages=messages_orm())).problems
    assert problem.subject == "messages.sequence_id" and "hands out 5 next" in problem.message


def test_half_applied_upgrade_names_revision_tables_and_columns():
    orm = expected(messages=orm_table({**messages_orm()["columns"], "conversation_id": orm_column()}),
                   conversations=orm_table({"id": orm_column(nullable=False)}))
    report = check_schema(live(revision="39577145c45d", messages=messages_live()), orm)
    assert [str(p) for p in report.problems] == [
        "alembic revision: found 39577145c45d (the schema of Letta 0.16.1), "
        "expected 27de0f58e076 (the schema of Letta 0.16.2)",
        "conversations: missing table",
        "messages.conversation_id: missing",
    ]


def test_type_and_nullability_mismatches_are_problems():
    orm = expected(steps=orm_table({"stop_reason": orm_column("VARCHAR"), "agent_id": orm_column(nullable=False)}))
    database = live(steps=LiveTable(columns={"stop_reason": LiveColumn("stopreasontype", True, None, is_enum=True),
                                             "agent_id": LiveColumn("character varying", True, None)}))
    assert {p.subject for p in check_schema(database, orm).problems} == {"steps.stop_reason", "steps.agent_id"}


def test_extra_columns_fail_only_when_inserts_cannot_omit_them():
    orm = expected(steps=orm_table({"id": orm_column(nullable=False)}))
    database = live(steps=LiveTable(columns={"id": LiveColumn("character varying", False, None),
                                             "job_id": LiveColumn("character varying", False, None),
                                             "legacy": LiveColumn("text", True, None)}))
    report = check_schema(database, orm)
    assert [p.subject for p in report.problems] == ["steps.job_id"]
    assert "steps.legacy" in {n.subject for n in report.notes}


def test_missing_unique_constraint_is_a_problem_missing_plain_index_a_note():
    columns = {"name": orm_column(), "organization_id": orm_column()}
    orm = expected(tools=orm_table(columns, uniques=[{"name": "uix_name_organization",
                                                      "columns": ["name", "organization_id"]}],
                                   indexes=[{"name": "ix_tools_org", "columns": ["organization_id"], "unique": False}]))
    database = live(tools=LiveTable(columns={c: LiveColumn("character varying", True, None) for c in columns}))
    report = check_schema(database, orm)
    assert [p.subject for p in report.problems] == ["tools.uix_name_organization"]
    assert "tools.ix_tools_org" in {n.subject for n in report.notes}

    database.tables["tools"].indexes["uix_name_organization"] = LiveIndex(("organization_id", "name"), True, "")
    assert check_schema(database, orm).ready  # column order does not matter for uniqueness


def test_an_index_a_killed_upgrade_left_invalid_is_named_with_its_repair():
    """Letta's 0.16.7 migrations build indexes CONCURRENTLY ... IF NOT EXISTS: one interrupted there stays
    INVALID for good (a re-run skips it), so schema check names it and the REINDEX that rebuilds it."""
    columns = {"name": orm_column(), "organization_id": orm_column()}
    orm = expected(tools=orm_table(columns, uniques=[{"name": "uix_name_organization",
                                                      "columns": ["name", "organization_id"]}],
                                   indexes=[{"name": "ix_tools_org", "columns": ["organization_id"], "unique": False}]))
    table = LiveTable(columns={c: LiveColumn("character varying", True, None) for c in columns},
                      indexes={"uix_name_organization": LiveIndex(("name", "organization_id"), True, "", valid=False),
                               "ix_tools_org": LiveIndex(("organization_id",), False, "", valid=False)})
    report = check_schema(live(tools=table), orm)
    assert [str(p) for p in report.problems] == [
        "tools.uix_name_organization: index is INVALID: a CREATE INDEX CONCURRENTLY was interrupted (a killed "
        "upgrade?); PostgreSQL keeps updating it but never uses it, and rows written before it was interrupted "
        "were never checked for duplicates; rebuild it: REINDEX INDEX CONCURRENTLY uix_name_organization"]
    assert any(n.subject == "tools.ix_tools_org" and "REINDEX INDEX CONCURRENTLY ix_tools_org" in n.message
               for n in report.notes)


def test_foreign_key_that_refuses_expected_cascades_is_a_problem():
    fk = {"name": None, "columns": ["agent_id"], "ref_table": "agents", "ref_columns": ["id"], "ondelete": "CASCADE"}
    orm = expected(blocks_agents=orm_table({"agent_id": orm_column(nullable=False)}, foreign_keys=[fk]))

    def database(ondelete):
        table = LiveTable(columns={"agent_id": LiveColumn("character varying", False, None)},
                          constraints={"fk": LiveConstraint("f", ("agent_id",), "", "agents", ("id",), ondelete)})
        return live(blocks_agents=table)

    assert check_schema(database("CASCADE"), orm).ready
    assert [str(p) for p in check_schema(database(None), orm).problems] == [
        "blocks_agents.agent_id: foreign key to agents(id) has ON DELETE NO ACTION, expected CASCADE"]
    fk["ondelete"] = None
    assert check_schema(database("CASCADE"), orm).ready  # cascading more than expected: a note


def test_database_without_letta_tables_is_not_ready():
    report = check_schema(LiveSchema(schema=None, revision=None, on_search_path=False), expected())
    assert [p.subject for p in report.problems] == ["database"]


def test_schema_diff_lists_every_difference_and_nothing_else():
    a, b = live(messages=messages_live()), live(messages=messages_live())
    assert diff_schemas(a, b) == []
    b.tables["messages"].columns["sequence_id"] = LiveColumn("bigint", False, None)
    b.tables["messages"].indexes["ix_messages_agent_sequence"] = LiveIndex(("agent_id", "sequence_id"), False, "CREATE")
    assert diff_schemas(a, b, "upgraded", "fresh") == [
        "messages.sequence_id default: upgraded nextval('message_seq_id'::regclass) | fresh -",
        "messages.ix_messages_agent_sequence (index): upgraded - | fresh CREATE",
    ]


def test_passwords_are_masked_in_both_dsn_forms():
    assert shown_dsn("postgresql://letta:s3cret-pw@db:5432/letta") == "postgresql://letta:***@db:5432/letta"
    assert "s3cret-pw" not in shown_dsn("host=db user=letta password=s3cret-pw dbname=letta")


def test_enum_without_a_value_the_models_write_is_a_problem():
    column = {**orm_column("vectordbprovider", nullable=False), "enum_values": ["NATIVE", "PINECONE", "TPUF"]}
    orm = expected(sources=orm_table({"vector_db_provider": column}))
    database = live(sources=LiveTable(columns={"vector_db_provider": LiveColumn("vectordbprovider", False, None, True)}))
    database.enums["vectordbprovider"] = ["NATIVE", "TPUF"]  # b888f21b151f stopped before ADD VALUE 'PINECONE'
    assert [str(p) for p in check_schema(database, orm).problems] == [
        "sources.vector_db_provider: enum vectordbprovider lacks PINECONE (writing those values fails)"]
