"""``--letta-suite``: collect the checks shipped in ``pytest_letta_compat.suite`` into the
user's run, as pytest-alembic's ``--test-alembic`` collects its built-in tests; and
``--letta-checks`` / ``--letta-skip-checks``: keep or drop tests by their ``letta_check`` name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..matrix.model import CHECKS
from . import settings

SUITE_PACKAGE = "pytest_letta_compat.suite"
SUITE_DIR = Path(__file__).resolve().parents[1] / "suite"  # found, not imported: its asserts get rewritten
SUITE_NODE_PREFIX = "letta-suite"


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    group.addoption("--letta-suite", action="store_true", default=None,
                    help="Also collect the compatibility suite shipped with pytest-letta-compat "
                         f"({', '.join(CHECKS)}) and run it against the matrix.")
    group.addoption("--letta-suite-only", action="store_true", default=False,
                    help="Run the compatibility suite shipped with pytest-letta-compat and nothing else (none of "
                         "the repository's own tests), e.g. before an upgrade.")
    group.addoption("--letta-checks", metavar="NAMES", default=None,
                    help="Run only tests of these letta_check names (comma-separated).")
    group.addoption("--letta-skip-checks", metavar="NAMES", default=None,
                    help="Leave out tests of these letta_check names (comma-separated).")
    parser.addini("letta_suite", "Collect the shipped compatibility suite (like --letta-suite).", type="bool",
                  default=False)
    parser.addini("letta_checks", "Run only these letta_check names (comma-separated).", default="")
    parser.addini("letta_skip_checks", "Leave out these letta_check names (comma-separated).", default="")


def configure(config: pytest.Config) -> None:
    """Add the suite's modules to what pytest collects (settings.resolve checked the filters)."""
    resolved = settings.of(config)
    if not resolved.suite:
        return
    pytest.register_assert_rewrite(SUITE_PACKAGE)
    modules = sorted(SUITE_DIR.glob("test_*.py"))
    if resolved.suite_only:
        given = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
        others = [a for a in given if Path(a.split("::")[0]).resolve().parent != SUITE_DIR]
        if others:
            raise pytest.UsageError(f"--letta-suite-only runs the shipped suite alone, but {others[0]!r} was given "
                                    "too. Leave the paths out, or use --letta-suite to run both.")
        config.args[:] = given or [str(p) for p in modules]
        return
    already = {Path(a.split("::")[0]).resolve() for a in config.args}
    config.args.extend(str(p) for p in modules if p not in already)


def make_module(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """The shipped suite's modules get short, stable test ids — ``letta-suite/test_smoke.py::…`` —
    wherever the package is installed (inside the rootdir or not: pytest names a file outside
    the rootdir by nothing at all, and two suite tests could then share an id)."""
    if module_path.parent.resolve() != SUITE_DIR:
        return None
    return pytest.Module.from_parent(parent, path=module_path, nodeid=f"{SUITE_NODE_PREFIX}/{module_path.name}")


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    only, skip = settings.of(config).checks, settings.of(config).skip_checks
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
