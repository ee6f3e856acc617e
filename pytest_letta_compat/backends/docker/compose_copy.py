"""The copy of an operator's compose file that the suite brings up beside their own stack
(fixed names and host ports dropped, data directories swapped for throwaway volumes, every
object labelled): the docker backend's to own, read from matrix.compose_file's parsing."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from ...matrix.compose_file import as_dict


def _container_port(entry: Any) -> str:
    if isinstance(entry, dict):
        target, protocol = str(entry["target"]), entry.get("protocol", "tcp")
    else:
        spec, _, protocol = str(entry).partition("/")
        target = spec.rsplit(":", 1)[-1]
    return target if protocol in ("", "tcp") else f"{target}/{protocol}"


def _isolated_volume(entry: Any, directory: Path, service: str, notes: list[str]) -> Any:
    """File bind mounts (init scripts, config) stay; directory bind mounts, where data
    lives, become throwaway volumes: the suite must never write into the operator's data."""
    if isinstance(entry, dict):
        if entry.get("type") != "bind":
            return entry
        source, target = entry.get("source", ""), entry["target"]
    else:
        parts = str(entry).split(":")
        if len(parts) < 2 or not parts[0].startswith((".", "/", "~")):
            return entry  # a named or anonymous volume: scoped to the test project
        source, target = parts[0], parts[1]
    host = (directory / os.path.expanduser(source)).resolve()
    if host.is_file():
        if isinstance(entry, dict):
            return {**entry, "source": str(host)}
        return ":".join([str(host), *str(entry).split(":")[1:]])
    notes.append(f"service `{service}`: the bind mount {source} -> {target} is replaced by a throwaway volume")
    return {"type": "volume", "target": target}


def _escape(value: Any) -> Any:
    """Values are already substituted: keep Compose from substituting them again."""
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value.replace("$", "$$") if isinstance(value, str) else value


def suite_copy(doc: dict, directory: Path, *, labels: dict[str, str], publish: dict[str, list[str]],
              environment: dict[str, dict[str, str]], images: dict[str, str]) -> tuple[dict, list[str]]:
    """The compose document the suite brings up beside the operator's own stack: fixed
    names and host ports dropped (ports are re-published on 127.0.0.1, ephemeral), data
    directories swapped for throwaway volumes, restart policies off (a crash must show),
    every container, network and volume labelled; ``environment`` and ``images`` override
    per service. Returns it and notes on what was changed."""
    out = copy.deepcopy(doc)
    notes: list[str] = []
    for name, svc in out["services"].items():
        svc.pop("container_name", None)
        svc["restart"] = "no"
        targets = [_container_port(p) for p in svc.get("ports") or []] + publish.get(name, [])
        if targets:
            svc["ports"] = [f"127.0.0.1::{t}" for t in dict.fromkeys(targets)]
        svc["labels"] = {**as_dict(svc.get("labels")), **labels}
        if svc.get("volumes"):
            svc["volumes"] = [_isolated_volume(v, directory, name, notes) for v in svc["volumes"]]
        if isinstance(svc.get("env_file"), (str, list)):
            files = [svc["env_file"]] if isinstance(svc["env_file"], str) else svc["env_file"]
            svc["env_file"] = [str((directory / f).resolve()) if isinstance(f, str) else f for f in files]
        if name in environment:
            svc["environment"] = {**as_dict(svc.get("environment")), **environment[name]}
        if name in images:
            svc["image"] = images[name]
    for section in ("networks", "volumes"):
        for key, spec in list((out.get(section) or {}).items()):
            spec = spec or {}
            if not spec.get("external"):
                out[section][key] = {**spec, "labels": {**as_dict(spec.get("labels")), **labels}}
    out.setdefault("networks", {}).setdefault("default", {"labels": dict(labels)})
    return _escape(out), notes
