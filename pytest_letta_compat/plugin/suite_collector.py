"""``--letta-suite``: collect the checks shipped in ``pytest_letta_compat.suite`` into the
user's run, as pytest-alembic's ``--test-alembic`` collects its built-in tests; and
``--letta-checks`` / ``--letta-skip-checks``: keep or drop tests by their ``letta_check`` name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..matrix.model import CHECKS

SUITE_PACKAGE = "pytest_letta_compat.suite"
SUITE_DIR = Path(__file__).resolve().parents[1] / "suite"  # found, not imported: its asserts get rewritten
SUITE_NODE_PREFIX = "letta-suite"


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    group.addoption("--letta-suite", action="store_true", default=None,
                    help="Also collect the compatibility suite shipped with pytest-letta-compat "
                         f"({', '.join(CHECKS)}) and run it against the matrix.")
    group.addoption("--letta-checks", metavar="NAMES", default=None,
                    help="Run only tests of these letta_check names (comma-separated).")
    group.addoption("--letta-skip-checks", metavar="NAMES", default=None,
                    help="Leave out tests of these letta_check names (comma-separated).")
    parser.addini("letta_suite", "Collect the shipped compatibility suite (like --letta-suite).", type="bool",
                  default=False)
    parser.addini("letta_checks", "Run only these letta_check names (comma-separated).", default="")
    parser.addini("letta_skip_checks", "Leave out these letta_check names (comma-separated).", default="")


def _names(config: pytest.Config, option: str, ini: str) -> set[str] | None:
    raw = config.getoption(option) or config.getini(ini)
    if not raw:
        return None
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = sorted(names - set(CHECKS))
    if unknown:
        where = option if config.getoption(option) else f"the {ini} ini key"
        raise pytest.UsageError(f"{where}: unknown check name(s) {', '.join(unknown)}. Allowed: {', '.join(CHECKS)}.")
    return names


def configure(config: pytest.Config) -> None:
    """Validate the check filters, and add the suite's modules to what pytest collects."""
    _names(config, "--letta-checks", "letta_checks")
    _names(config, "--letta-skip-checks", "letta_skip_checks")
    wanted = config.getoption("--letta-suite")
    if wanted is None:
        wanted = config.getini("letta_suite")
    if wanted:
        pytest.register_assert_rewrite(SUITE_PACKAGE)
        already = {Path(a.split("::")[0]).resolve() for a in config.args}
        config.args.extend(str(p) for p in sorted(SUITE_DIR.glob("test_*.py")) if p not in already)


def make_module(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The shipped suite's modules get short, stable test ids — ``letta-suite/test_smoke.py::…`` —
    wherever the package is installed (inside the rootdir or not: pytest names a file outside
    the rootdir by nothing at all, and two suite tests could then share an id)."""
    if module_path.parent.resolve() != SUITE_DIR:
        return None
    return pytest.Module.from_parent(parent, path=module_path, nodeid=f"{SUITE_NODE_PREFIX}/{module_path.name}")


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    only = _names(config, "--letta-checks", "letta_checks")
    skip = _names(config, "--letta-skip-checks", "letta_skip_checks") or set()
    if only is None and not skip:
        return
    keep, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("letta_check")
        name = marker.args[0] if marker and marker.args else None
        drop = (only is not None and name not in only) or name in skip
        (dropped if drop else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
