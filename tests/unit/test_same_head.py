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
