"""Matrix TOML that the tools write themselves (the gates' throwaway matrices): one way to
spell a value and a table, and one way to carry settings over from the operator's matrix."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path


def toml_value(value) -> str:
    """A TOML literal: strings as JSON strings (valid TOML basic strings), booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # JSON escapes (but not ASCII-only: TOML has no surrogate pairs), plus DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(value)


def table(name: str, fields: Mapping[str, object]) -> list[str]:
    """``[[name]]`` and its ``key = value`` lines (fields that are None are left out)."""
    return [f"[[{name}]]"] + [f"{k} = {toml_value(v)}" for k, v in fields.items() if v is not None]


def derived_matrix(name: str, base_matrix: Path | None, *, servers: Iterable[str],
                   upgrades: Iterable[tuple[str, str]] = (), letta_code: Iterable[str] | None = None) -> str:
    """A matrix of the given servers and upgrade paths that keeps the backend, PostgreSQL and
    declared incompatibilities of ``base_matrix`` (and its Letta Code, unless ``letta_code`` is given)."""
    base = tomllib.loads(base_matrix.read_text()) if base_matrix else {}
    lines = [f"name = {toml_value(name)}"]
    if "backend" in base:
        lines.append(f"backend = {toml_value(base['backend'])}")
    if base.get("postgres"):
        lines += ["[postgres]"] + [f"{k} = {toml_value(v)}" for k, v in base["postgres"].items()]
    for version in servers:
        lines += table("server", {"version": version})
    for old, new in upgrades:
        lines += table("upgrade", {"from": old, "to": new})
    codes = [{"version": v} for v in letta_code] if letta_code is not None else base.get("letta_code", [])
    for entry in codes:
        lines += table("letta_code", entry)
    for entry in base.get("known_incompatibility", []):
        lines += table("known_incompatibility", entry)
    return "\n".join(lines) + "\n"
