"""Releases sharing an alembic head: an upgrade between them has nothing to migrate (issue #21)."""

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
