"""--letta-suite-only: the operator's main job collects the shipped suite and nothing of the
repository's own tests, whatever testpaths says (issue #22)."""

from __future__ import annotations


def _repo(pytester):
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    pytester.path.joinpath("tests", "test_own.py").write_text("def test_own():\n    pass\n")


def test_suite_only_collects_the_shipped_suite_alone(pytester):
    _repo(pytester)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--letta-suite-only", "-p", "no:cacheprovider")
    ids = [line for line in result.outlines if "::" in line]
    assert ids and all(line.startswith("letta-suite/") for line in ids), result.outlines
    assert not any("test_own" in line for line in result.outlines)


def test_suite_adds_the_shipped_suite_to_the_repositorys_tests(pytester):
    _repo(pytester)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--letta-suite", "-p", "no:cacheprovider")
    ids = [line for line in result.outlines if "::" in line]
    assert any(line.startswith("letta-suite/") for line in ids) and any("test_own" in line for line in ids)


def test_suite_only_with_other_paths_refuses_in_one_line(pytester):
    _repo(pytester)
    result = pytester.runpytest_subprocess("--letta-suite-only", "tests/test_own.py", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--letta-suite-only runs the shipped suite alone, but 'tests/test_own.py' was "
                                 "given too. Leave the paths out, or use --letta-suite to run both.*"])
    assert "Traceback" not in result.stderr.str()
