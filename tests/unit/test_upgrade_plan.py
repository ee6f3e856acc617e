"""The upgrade plan: which revisions an upgrade applies, which databases it accepts, and what
it tells the operator when the inputs do not fit. Uses Letta's real migration scripts."""

from __future__ import annotations

import pytest
pytest.importorskip("hypothesis", reason="the property-based tests need the test extra: pip install -e '.[test]'")
from hypothesis import given, strategies as st

from pytest_letta_compat import versions
from pytest_letta_compat.cache import cache_root
from pytest_letta_compat.errors import LettaCompatError
from pytest_letta_compat.provision.install import ensure_migration_scripts
from pytest_letta_compat.operations.plan import check_server_version, plan_upgrade
from pytest_letta_compat.provision.alembic import RevisionGraph
from pytest_letta_compat.schema.inspect import default_sequence, qualified_name
from pytest_letta_compat.versions import describe_revision, versions_at

HEAD_0113 = versions.server_release("0.11.3").alembic_head
HEAD_0162 = versions.server_release("0.16.2").alembic_head


@pytest.fixture(scope="module")
def graph() -> RevisionGraph:
    return RevisionGraph.from_scripts(ensure_migration_scripts(cache_root()))


def test_every_release_head_is_in_the_migration_scripts(graph):
    for version in versions.known_server_versions():
        assert versions.server_release(version).alembic_head in graph.parents, version


def test_incident_path_applies_the_44_revisions_in_order(graph):
    plan = plan_upgrade("0.11.3", "0.16.2", HEAD_0113, graph)
    assert len(plan.pending) == 44
    assert plan.pending[0] == "ffb17eb241fc"  # add api version to byok providers (0.11.4)
    assert plan.pending[-2:] == ["ee2b43eea55e", HEAD_0162]  # steps.request_id, then conversations
    assert not plan.resumes
    assert "0.11.2, 0.11.3" in plan.revision_text


def test_half_applied_upgrade_resumes_from_the_stamped_revision(graph):
    """The seed incident's database stopped at 0.16.1's head: two revisions were still missing."""
    plan = plan_upgrade("0.11.3", "0.16.2", versions.server_release("0.16.1").alembic_head, graph)
    assert plan.pending == ["ee2b43eea55e", HEAD_0162]
    assert plan.resumes


def test_database_already_at_the_target_needs_no_migration(graph):
    assert plan_upgrade("0.11.3", "0.16.2", HEAD_0162, graph).pending == []


def test_a_revision_between_releases_is_described_as_partly_applied(graph):
    text = describe_revision("ee2b43eea55e", graph)
    assert "after Letta 0.16.1" in text and "before Letta 0.16.2" in text


def test_releases_sharing_a_head_are_all_named():
    assert versions_at(HEAD_0113) == ["0.11.2", "0.11.3"]
    assert versions_at("not-a-revision") == []


@pytest.mark.parametrize(("args", "message"), [
    (("0.11.3", "0.16.3", HEAD_0113), "--to '0.16.3' is not a Letta server release"),
    (("0.16.2", "0.11.3", HEAD_0162), "is not newer than --from"),
    (("0.16.2", "0.16.2", HEAD_0162), "is not newer than --from"),
    (("0.11.3", "0.16.2", versions.server_release("0.11.0").alembic_head), "older than Letta 0.11.3"),
    (("0.11.3", "0.16.2", versions.server_release("0.16.8").alembic_head), "newer than Letta 0.16.2"),
    (("0.11.3", "0.16.2", "0123456789ab"), "do not know"),
    (("0.11.3", "0.16.2", None), "no alembic revision"),
])
def test_inputs_that_do_not_fit_are_refused_with_a_reason(graph, args, message):
    with pytest.raises(LettaCompatError, match=message):
        plan_upgrade(*args, graph)


def test_unknown_strategy_is_refused(graph):
    with pytest.raises(LettaCompatError, match="Allowed: in-place, recreate"):
        plan_upgrade("0.11.3", "0.16.2", HEAD_0113, graph, strategy="blue-green")


def test_a_server_of_another_version_is_refused():
    check_server_version("0.11.3", "0.11.3", "0.16.2", "http://h")
    with pytest.raises(LettaCompatError, match="reports Letta 0.16.2.*has happened already|happened already"):
        check_server_version("0.16.2", "0.11.3", "0.16.2", "http://h")


def test_graph_reads_both_assignment_styles_and_merge_revisions(tmp_path):
    scripts = tmp_path / "alembic" / "versions"
    scripts.mkdir(parents=True)
    (scripts / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (scripts / "b.py").write_text('revision: str = "b"\ndown_revision: str | None = "a"\n')
    (scripts / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')
    (scripts / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    graph = RevisionGraph.from_scripts(tmp_path)
    assert graph.ancestors("d") == {"a", "b", "c", "d"}
    assert graph.steps("b", "d") == ["c", "d"]


@pytest.mark.parametrize(("default", "sequence"), [
    ("nextval('message_seq_id'::regclass)", ("message_seq_id",)),
    ("nextval('letta.message_seq_id'::regclass)", ("letta", "message_seq_id")),
    ("nextval('\"letta\".\"message_seq_id\"'::regclass)", ("letta", "message_seq_id")),
    ("nextval('messages_sequence_id_seq'::regclass)", ("messages_sequence_id_seq",)),  # the incident's hand fix
    ("NULL::integer", None),
    (None, None),
])
def test_fixup_recognises_the_sequence_behind_a_default(default, sequence):
    assert default_sequence(default) == sequence


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1),
                min_size=1, max_size=2))
def test_any_sequence_name_reads_back_from_the_default_postgresql_prints(parts):
    """One parser for schema inspection and the fix-ups: quoted names with dots, quotes and
    apostrophes come back exactly (pg_get_expr doubles the apostrophes inside the literal)."""
    literal = qualified_name(tuple(parts)).replace("'", "''")
    assert default_sequence(f"nextval('{literal}'::regclass)") == tuple(parts)
