"""The seed cache: a second build of an upgrade path starts no server and seeds nothing, yet
holds the same agents and messages, talks to this run's fake LLM, and passes the upgrade's
backup gate; the template it was made from names it."""

from __future__ import annotations

import pytest

from pytest_letta_compat.operations.upgrade_path import SEED_FACTS, UpgradePath, agents_in, seed_cache_dir

pytestmark = pytest.mark.letta_check("upgrade")


def test_a_second_build_restores_the_seeded_path_without_a_server(letta_upgrade_path, letta_backend, letta_fake_llm,
                                                                   tmp_path):
    first = letta_upgrade_path  # seeded now, or restored from an earlier run's seeding: either way it is cached
    assert (seed_cache_dir(letta_backend, first.from_version) / SEED_FACTS).is_file()
    started = []  # what this path started (a prestarted server of another entry may boot meanwhile)

    def start_server(version, **kwargs):
        started.append(version)
        return letta_backend.start_server(version, **kwargs)

    again = UpgradePath(letta_backend, first.from_version, first.to_version, letta_fake_llm, tmp_path,
                        start_server=start_server, name="seed_cache_again")
    again.build()

    assert started == [], "a cached seeding started a Letta server"
    assert "seedcache" in again.timings and "seed" not in again.timings
    assert again.agents == first.agents and again.history == first.history
    assert again.before == first.before and again.messages_before == first.messages_before
    with letta_backend.connect(again.seeded) as conn:
        endpoints = {row[0] for row in conn.execute(
            "SELECT llm_config::jsonb->>'model_endpoint' FROM agents UNION "
            "SELECT embedding_config::jsonb->>'embedding_endpoint' FROM agents").fetchall()}
    assert endpoints == {letta_fake_llm.base_url}, "the restored agents still name an earlier run's fake LLM"
    # apply_upgrade accepted the cached backup as a backup of this database, and lost nothing
    upgraded = agents_in(letta_backend, again.upgraded)
    assert sorted(upgraded.values()) == sorted(first.before.values())


def test_the_template_names_the_cache(letta_backend):
    """A new release, alembic head, PostgreSQL major or image makes a new template dump, and so
    a new seed cache: a seeding is never restored onto what it was not made from."""
    cached = seed_cache_dir(letta_backend, "0.11.3")
    assert cached.name.startswith(letta_backend.template_dump("0.11.3").stem + "-")
    assert cached.parent.parent == letta_backend.template_dump("0.11.3").parent
    assert seed_cache_dir(letta_backend, "0.16.2") != cached
