"""The python examples of docs/fixtures.md run, as written, against real servers.

They are extracted from the page and run in an inner pytest session on the 0.16.2 entry of
matrices/ci.toml (with its upgrade paths and Letta Code versions): the httpx helpers, the
official letta-client SDK, letta_db, letta_backend + letta_server_factory (`.stop()`,
`.database`, `migrate`) and the letta_code fixture.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_letta_compat.matrix.model import load_matrix
from pytest_letta_compat.matrix.writer import table, toml_value

pytestmark = pytest.mark.letta_check("smoke")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DOC = ROOT / "docs" / "fixtures.md"
CI_MATRIX = ROOT / "matrices" / "ci.toml"
SERVER = "0.16.2"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def example_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(FIXTURES_DOC.read_text(encoding="utf-8"))


def example_matrix() -> str:
    """ci.toml with its 0.16.2 [[server]] entry as the only server."""
    ci = load_matrix(CI_MATRIX)
    server = next(s for s in ci.servers if s.version == SERVER)
    lines = [f"name = {toml_value('docs-examples')}", "[postgres]", f"version = {ci.postgres.version}",
             *table("server", {"version": server.version, "secure": server.secure})]
    for up in ci.upgrades:
        lines += table("upgrade", {"from": up.from_version, "to": up.to_version})
    for code in ci.letta_code:
        lines += table("letta_code", {"version": code.version})
    for known in ci.known_incompatibilities:
        lines += table("known_incompatibility", {
            "check": known.check, "reason": known.reason,
            "server": str(known.server) if known.server is not None else None,
            "letta_code": str(known.letta_code) if known.letta_code is not None else None})
    return "\n".join(lines) + "\n"


def test_the_page_has_examples_for_both_clients():
    code = "\n".join(example_blocks())
    assert "from letta_client import Letta" in code and "letta_client" in code
    for used in (".stop()", ".database", "letta_fake_llm.embedding_model", "agent_configs(", "letta_code("):
        assert used in code, f"docs/fixtures.md's examples no longer use {used}"


def test_fixture_examples_run_against_real_servers(pytester: pytest.Pytester, pytestconfig: pytest.Config,
                                                   letta_matrix):
    if letta_matrix is None:
        pytest.skip("starts real servers: runs in a matrix run (e.g. --letta-matrix matrices/ci.toml)")
    if (pytestconfig.getoption("--letta-backend") or letta_matrix.backend) == "docker":
        pytest.skip("the examples run on the native backend, in the native job")
    pytest.importorskip("letta_client", reason="the SDK example needs the test extra: pip install -e '.[test]'")
    blocks = example_blocks()
    assert blocks, "docs/fixtures.md has no python example"
    for number, code in enumerate(blocks, 1):
        pytester.makepyfile(**{f"test_docs_example_{number}": code})
    pytester.makefile(".toml", matrix=example_matrix())
    args = ["--letta-matrix", "matrix.toml", "-p", "no:cacheprovider", "-rA"]
    cache = (pytestconfig.getoption("--letta-cache-dir") or os.environ.get("LETTA_COMPAT_CACHE")
             or pytestconfig.getini("letta_cache_dir"))
    if cache:
        args += ["--letta-cache-dir", str(cache)]
    result = pytester.runpytest_subprocess(*args, timeout=1800)
    tests = sum(len(re.findall(r"^def test_", code, re.M)) for code in blocks)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= tests and not {"failed", "errors", "skipped", "xfailed"} & outcomes.keys(), \
        result.stdout.str()[-6000:]
