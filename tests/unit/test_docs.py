"""The README and docs/ say only what is true: links resolve, commands parse, options exist,
and the README's test command is the one CI runs. No server is started here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_letta_compat.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CI_RUN = ROOT / ".ci" / "run"
README_LIMIT = 12_000

# The two commands of the README, byte for byte: .ci/run calls the second one verbatim.
MAIN_JOB = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
            ".venv/bin/pytest --letta-matrix matrices/default.toml --letta-suite-only -n auto --dist loadgroup")
TEST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
                ".venv/bin/pytest --letta-matrix matrices/ci.toml --letta-suite -n auto --dist loadgroup")

# Pages that other contributors write at the same time as these docs. Links to them are
# allowed to dangle until they land; every other link must resolve. Once a page exists its
# links are checked like any other.
PAGES_WRITTEN_ELSEWHERE = {"ci-gate.md", "rehearse.md", "letta-code.md", "leaving-the-server.md"}
# Commands those pages document, being built at the same time. Their command lines are
# skipped only while the command is not registered in `letta-compat` at all; once it is,
# every line that shows it must parse.
COMMANDS_BUILT_ELSEWHERE = {"init", "rehearse", "advise", "move-to-local"}

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
LETTA_OPTION = re.compile(r"(?<![\w-])--letta-[a-z][a-z-]*[a-z]")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("**/*.md"))]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def blocks(path: Path, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8"))
            if language is None or lang == language]


def prose(path: Path) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def test_readme_fits_the_limit():
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; the limit is {README_LIMIT}: move detail to docs/"


def test_readme_shows_the_two_commands_verbatim():
    commands = [line.strip() for body in blocks(README, "bash") for line in body.splitlines()]
    assert MAIN_JOB in commands
    assert TEST_COMMAND in commands


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    readme_lines = [line.strip() for body in blocks(README, "bash") for line in body.splitlines()]
    readme_test = [line for line in readme_lines if "--letta-matrix matrices/ci.toml" in line]
    assert readme_test == [TEST_COMMAND], "the README shows one test command"
    assert TEST_COMMAND in ci_lines, ".ci/run must call exactly the README's test command"


def test_docker_docs_show_the_docker_job_ci_runs():
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    docker_job = [line for line in ci_lines
                  if line.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test,docker]'")]
    assert len(docker_job) == 1, "expected one docker-job line in .ci/run"
    shown = [line.strip() for body in blocks(DOCS / "docker.md", "bash") for line in body.splitlines()]
    assert docker_job[0] in shown, "docs/docker.md must show the docker job exactly as .ci/run runs it"


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_relative_links_resolve(path: Path):
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto, anchors on the same page
        file_part = target.split("#", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if resolved.exists():
            continue
        if resolved.parent == DOCS.resolve() and resolved.name in PAGES_WRITTEN_ELSEWHERE:
            continue
        broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to files that do not exist: {broken}"


def _letta_compat_commands(path: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """Each `letta-compat ...` command of the file's bash blocks, read as a shell session:
    `export NAME=value` lines before it (in any earlier block of the file) are in effect."""
    env: dict[str, str] = {}
    found = []
    for body in blocks(path, "bash"):
        for line in body.replace("\\\n", " ").splitlines():  # a line continued with a backslash is one line
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                pytest.fail(f"{path.relative_to(ROOT)}: cannot split {line!r}: {exc}")
            if words[:1] == ["export"]:
                for assignment in words[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = value
                continue
            segment: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "||", ";", "|"):
                    if segment[:1] == ["letta-compat"]:
                        found.append((line.strip(), segment[1:], dict(env)))
                    segment = []
                else:
                    segment.append(word)
    return found


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_letta_compat_commands_parse(path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    registered = _subcommands()
    for line, argv, env in _letta_compat_commands(path):
        command = next((a for a in argv if not a.startswith("-")), None)
        if command in COMMANDS_BUILT_ELSEWHERE and command not in registered:
            continue
        for name in ("LETTA_PG_URI", "LETTA_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            build_parser().parse_args(argv)  # the parser reads $LETTA_PG_URI when it is built
        except SystemExit as exc:
            err = capsys.readouterr().err.strip().splitlines()
            pytest.fail(f"{path.relative_to(ROOT)}: `{line}` does not parse (exit {exc.code}): "
                        f"{err[-1] if err else ''}", pytrace=False)


def test_the_docs_show_letta_compat_commands():
    """The parse test above is not vacuous."""
    shown = sum(len(_letta_compat_commands(p)) for p in doc_files())
    assert shown >= 20


@pytest.fixture(scope="module")
def plugin_options(tmp_path_factory) -> set[str]:
    """Every --letta-* option in the plugin's `pytest --help` (run outside this repo's ini)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                         cwd=tmp_path_factory.mktemp("help"), capture_output=True, text=True,
                         env={**os.environ, "PYTEST_ADDOPTS": ""}, timeout=120)
    assert out.returncode == 0, out.stderr
    options = set(LETTA_OPTION.findall(out.stdout))
    assert "--letta-matrix" in options and "--letta-suite" in options, out.stdout[-2000:]
    return options


def _cli_options(parser) -> set[str]:
    """Every option string of `letta-compat` and its subcommands (e.g. `init --letta-code`)."""
    options = set()
    for action in parser._actions:
        options.update(action.option_strings)
        for sub in (getattr(action, "choices", None) or {}).values() if action.nargs == "A..." else ():
            options |= _cli_options(sub)
    return options


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_letta_options_exist(path: Path, plugin_options: set[str]):
    """A `--letta-*` option is the plugin's (pytest --help), or one of a letta-compat command."""
    shown = set(LETTA_OPTION.findall(path.read_text(encoding="utf-8")))
    unknown = sorted(shown - plugin_options - _cli_options(build_parser()))
    assert not unknown, f"{path.relative_to(ROOT)} shows options the plugin does not have: {unknown}"


# the pages an operator reads; internals (module paths, migration ids, Letta's own functions)
# belong in docs/internals.md
OPERATOR_PAGES = [README, *(DOCS / name for name in ("operator-runbook.md", "rehearse.md", "ci-gate.md",
                                                      "letta-code.md", "leaving-the-server.md", "docker.md"))]
# a revision id is named to an operator only as the tool prints it: with the release whose schema it is
REVISION = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12}\b")
RELEASE_NAMED = re.compile(r"schema of Letta|after Letta|before Letta")
INTERNAL_WORDS = re.compile(r"pytest_letta_compat/|CryptoUtils|Secret\.from_plaintext|seed's manual procedure")


@pytest.mark.parametrize("path", OPERATOR_PAGES, ids=_ids(OPERATOR_PAGES))
def test_operator_pages_keep_internals_in_internals_md(path: Path):
    text = prose(path)
    lines = [line for line in text.splitlines()
             if INTERNAL_WORDS.search(line) or (REVISION.search(line) and not RELEASE_NAMED.search(line))]
    assert not lines, f"{path.name} names internals an operator cannot act on (move them to internals.md): {lines}"
