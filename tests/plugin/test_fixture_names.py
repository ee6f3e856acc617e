"""Every fixture the plugin gives users starts with letta_; the old names still answer, with
a warning naming the new one (issue #23). No server starts: the fake LLM and the fixture
registry are enough."""

from __future__ import annotations


def test_the_old_fake_llm_name_still_works_and_warns(pytester):
    pytester.makepyfile(test_names="""
        def test_old(fake_llm, letta_fake_llm):
            assert fake_llm is letta_fake_llm and fake_llm.base_url.startswith("http://127.0.0.1:")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*LettaCompatDeprecationWarning: the fixture `fake_llm` is now `letta_fake_llm`*"])


def test_the_new_name_does_not_warn(pytester):
    pytester.makepyfile(test_names="""
        def test_new(letta_fake_llm):
            assert letta_fake_llm.model
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "default")
    result.assert_outcomes(passed=1)
    assert "LettaCompatDeprecationWarning" not in result.stdout.str()


def test_every_user_fixture_starts_with_letta_but_the_deprecated_aliases(pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    from_plugin = [line.split()[0] for line in result.outlines
                   if line and not line.startswith(" ") and "plugin/fixtures.py" in line]
    assert from_plugin, result.outlines
    assert {n for n in from_plugin if not n.startswith("letta_")} == {"fake_llm"}  # the deprecated alias alone
    assert "letta_backend" in from_plugin and "letta_postgres" in from_plugin
