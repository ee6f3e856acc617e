"""The layout keeps its promises: read every module's imports (ast, nothing is imported) and
check that the package has no import loop, that pytest stays in the plugin layer and the
shipped suite, and that no module reaches into another's private names."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pytest_letta_compat

PACKAGE = pytest_letta_compat.__name__
ROOT = Path(pytest_letta_compat.__file__).parent
PYTEST_LAYERS = ("plugin", "suite")  # the only subpackages that may import pytest


@dataclass
class Module:
    name: str  # pytest_letta_compat.backends.base
    path: Path
    is_package: bool
    imports: dict[str, int] = field(default_factory=dict)  # module of the package -> first line
    external: dict[str, int] = field(default_factory=dict)  # top-level name outside the package -> line
    private: list[str] = field(default_factory=list)  # "line N: from X import _y"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def collect() -> dict[str, Module]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        modules[name] = Module(name, path, path.name == "__init__.py")
    for module in modules.values():
        read_imports(module, modules)
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def read_imports(module: Module, modules: dict[str, Module]) -> None:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    aliases: dict[str, str] = {}  # local name -> module of the package it is bound to

    def depend(target: str, line: int) -> None:
        while target not in modules and "." in target:  # `from .x import name`: x itself
            target = target.rpartition(".")[0]
        if target != module.name:
            module.imports.setdefault(target, line)

    for node in ast.walk(tree):  # function-level (lazy) imports count: a loop is a loop
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    depend(alias.name, node.lineno)
                    aliases[alias.asname or alias.name] = alias.name
                else:
                    module.external.setdefault(alias.name.split(".")[0], node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                module.external.setdefault(source.split(".")[0], node.lineno)
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from . import images`
                    depend(submodule, node.lineno)
                    aliases[alias.asname or alias.name] = submodule
                else:
                    depend(source, node.lineno)
                if is_private(alias.name) and modules.get(submodule) is None:
                    module.private.append(f"line {node.lineno}: from {source} import {alias.name}")
                elif is_private(alias.name):
                    module.private.append(f"line {node.lineno}: imports the private module {submodule}")
    for node in ast.walk(tree):  # `procs._child_setup` through an imported module
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and is_private(node.attr) and aliases[node.value.id] != module.name):
            module.private.append(f"line {node.lineno}: {node.value.id}.{node.attr} "
                                  f"(private to {aliases[node.value.id]})")


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in modules[name].imports:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in modules:
        if name not in index:
            visit(name)
    return found


MODULES = collect()


def describe_cycle(component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b} (line {line})" for a in component for b, line in MODULES[a].imports.items() if b in members]
    return "; ".join(edges)


def test_the_reader_sees_the_layout():
    """Guards the checks below: they would pass vacuously if nothing were read."""
    assert {"pytest_letta_compat.backends.base", "pytest_letta_compat.postgres.client",
            "pytest_letta_compat.plugin.hooks"} <= set(MODULES)
    assert "pytest_letta_compat.backends.base" in MODULES["pytest_letta_compat.backends.native"].imports
    assert "pytest" in MODULES["pytest_letta_compat.plugin.hooks"].external


def test_the_package_has_no_import_loop():
    loops = cycles(MODULES)
    assert not loops, "import loops:\n" + "\n".join(describe_cycle(c) for c in loops)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[1:2] and n.split(".")[1] not in PYTEST_LAYERS))
def test_pytest_is_imported_only_by_the_plugin_layer_and_the_suite(name):
    module = MODULES[name]
    used = {lib: line for lib, line in module.external.items() if lib in ("pytest", "_pytest") or lib.startswith("pytest_")}
    assert not used, f"{module.path.relative_to(ROOT.parent)} imports {used} (line numbers); only " \
                     f"{', '.join(PYTEST_LAYERS)}/ may: the core must run without pytest (the CLI does)"


def test_no_module_uses_another_modules_private_names():
    offenders = {name: m.private for name, m in MODULES.items() if m.private}
    assert not offenders, "make these public (or move the code where it is used):\n" + "\n".join(
        f"{name}: {'; '.join(found)}" for name, found in offenders.items())


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """A planted loop, a pytest import in the core and a private import are all found."""
    planted = tmp_path / PACKAGE
    (planted / "core").mkdir(parents=True)
    (planted / "__init__.py").write_text("")
    (planted / "core" / "__init__.py").write_text("")
    (planted / "core" / "a.py").write_text("from .b import thing\nimport pytest\n")
    (planted / "core" / "b.py").write_text("from . import a\n\ndef f():\n    return a._hidden\n")
    (planted / "core" / "c.py").write_text("from .a import _secret_helper\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", planted)
    modules = collect()
    assert cycles(modules) == [[f"{PACKAGE}.core.a", f"{PACKAGE}.core.b"]]
    assert "pytest" in modules[f"{PACKAGE}.core.a"].external
    assert modules[f"{PACKAGE}.core.c"].private == [f"line 1: from {PACKAGE}.core.a import _secret_helper"]
    assert modules[f"{PACKAGE}.core.b"].private == [f"line 4: a._hidden (private to {PACKAGE}.core.a)"]
