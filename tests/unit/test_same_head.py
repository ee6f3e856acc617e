"""Releases sharing an alembic head: an upgrade between them has nothing to migrate (issue #21);
and a release is accepted as an image tag spells it (v0.16.2) wherever one is asked for (#22)."""

import pytest
from hypothesis import given, strategies as st

from pytest_letta_compat import versions


def test_the_same_head_groups_are_the_releases_an_operator_may_bump_without_a_migration():
    groups = versions.same_head_groups()
    for group in (["0.11.2", "0.11.3"], ["0.12.0", "0.12.1"], ["0.16.5", "0.16.6"], ["0.16.7", "0.16.8"]):
        assert group in groups
    assert ["0.14.0", "0.15.0", "0.15.1"] in groups
    assert ["0.11.4", "0.11.5", "0.11.6"] in groups


def test_share_head_is_true_only_for_two_known_releases_with_one_head():
    assert versions.share_head("0.16.7", "0.16.8")
    assert not versions.share_head("0.12.1", "0.16.8")
    assert not versions.share_head("0.16.7", "99.0.0")


def test_two_paths_to_one_target_and_two_runs_never_share_a_database_name(tmp_path):
    """handfix_0_16_8 once collided between 0.16.7 -> 0.16.8 and 0.12.1 -> 0.16.8 in one run;
    a cluster may also outlive a run, so names differ between runs too."""
    from pytest_letta_compat.backends.native import NativeBackend

    def backend():
        return NativeBackend(postgres=None, cache=tmp_path, workdir=tmp_path, llm_env={}, start_timeout=1)

    run, other_run = backend(), backend()
    names = [run.unique_name("handfix", "0.16.7", "0.16.8"), run.unique_name("handfix", "0.12.1", "0.16.8"),
             run.unique_name("handfix", "0.16.7", "0.16.8"), other_run.unique_name("handfix", "0.16.7", "0.16.8")]
    assert len(set(names)) == len(names)
    assert all(n.startswith("handfix_") and "." not in n and len(n) <= 63 for n in names)


@given(st.sampled_from(versions.known_server_versions()), st.sampled_from(["", "v", "V", " v"]))
def test_a_release_may_be_spelled_as_its_image_tag(release, prefix):
    assert versions.spelled(f"{prefix}{release}") == release


@pytest.mark.parametrize("argv, attr", [
    (["advise", "--server", "v0.16.2"], "server"),
    (["upgrade", "--from", "v0.16.2", "--to", "v0.16.8", "--dsn", "x", "--url", "http://x", "--backup", "b"], "from_version"),
    (["rehearse", "--dump", "d", "--to", "v0.16.8"], "to"),
    (["init", "--from", "v0.16.2"], "from_version"),
    (["gate", "--compose", "c.yml", "--from", "v0.16.2"], "from_version"),
    (["schema", "check", "--dsn", "x", "--server-version", "v0.16.2"], "server_version"),
])
def test_every_server_version_option_takes_the_image_tag_spelling(argv, attr):
    from pytest_letta_compat.cli.main import build_parser

    value = getattr(build_parser().parse_args(argv), attr)
    assert (value if isinstance(value, str) else value[0]).startswith("0.16.")
