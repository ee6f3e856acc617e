"""The operator's Docker Compose file: which Letta image it runs, and whether it is pinned.

The incident began with ``image: letta/letta:latest``: a pull moved the server from 0.11.3
to 0.16.2 over a database nobody migrated. So a Letta image must name a release
(``letta/letta:0.16.2``) or a digest; other services must at least not float on
``latest``. Pytest-free and Docker-free: the plugin, the docker backend and the CI gate
(``letta-compat gate --compose FILE``) all use it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import versions
from ..errors import LettaCompatError
from .model import Matrix, PostgresSpec, ServerEntry

LETTA_REPOSITORIES = ("letta/letta", "memgpt/letta", "letta-compat/letta")
RELEASE_TAG = re.compile(r"^v?\d+\.\d+\.\d+(?:[.+-][0-9A-Za-z.+-]+)?$")  # 0.16.2, 0.16.2-rc1


class ComposeError(LettaCompatError):
    """The compose file cannot be read, or it does not say which Letta it runs."""


class UnpinnedImageError(ComposeError):
    """A service's image can move to another release without the file changing."""


@dataclass(frozen=True)
class ImageRef:
    repository: str  # registry/namespace/name
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> "ImageRef":
        name, _, digest = ref.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:  # a colon before the last slash is a registry port
            name, tag = name[:colon], name[colon + 1:]
        else:
            tag = None
        return cls(name, tag or None, digest or None)

    @property
    def is_letta(self) -> bool:
        path = self.repository.split("/")
        if len(path) > 2 and ("." in path[0] or ":" in path[0] or path[0] == "localhost"):
            path = path[1:]  # drop the registry host
        return "/".join(path[-2:]) in LETTA_REPOSITORIES


# -- reading -------------------------------------------------------------------------------


_DOUBLE_QUOTED_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}


def _dotenv_value(raw: str) -> str:
    """One value as Compose's dotenv reader takes it: 'single' literal, "double" with
    escapes, unquoted up to an inline comment (` #`, after whitespace) and trimmed."""
    raw = raw.strip()
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return raw[1:end] if end > 0 else raw[1:]
    if raw[:1] == '"':
        out, i = [], 1
        while i < len(raw) and raw[i] != '"':
            if raw[i] == "\\" and i + 1 < len(raw):
                out.append(_DOUBLE_QUOTED_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            else:
                out.append(raw[i])
                i += 1
        return "".join(out)
    return re.split(r"\s#", raw, maxsplit=1)[0].strip()


def env_file_values(file: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (.env or a service's env_file); missing means empty."""
    values: dict[str, str] = {}
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return values
    except OSError as exc:
        raise ComposeError(f"{file}: the env file cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise ComposeError(f"{file}: the env file is not UTF-8 text; Compose reads KEY=VALUE lines.") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("export ").strip()] = _dotenv_value(value)
    return values


def _interpolate(value: Any, env: dict[str, str], path: Path) -> Any:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error} (a default may hold ${...} itself, as Letta's compose.yaml
    writes LETTA_PG_URI); $$ is a literal $."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, path) for v in value]
    if not isinstance(value, str):
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] != "$" or i + 1 == len(value):
            out.append(value[i])
            i += 1
        elif value[i + 1] == "$":
            out.append("$")
            i += 2
        elif value[i + 1] == "{":
            depth, j = 1, i + 2
            while j < len(value) and depth:
                depth += {"{": 1, "}": -1}.get(value[j], 0)
                j += 1
            if depth:
                raise ComposeError(f"{path}: invalid variable substitution `{value[i:i + 40]}` (no closing `}}`).")
            out.append(_substitute(value[i + 2:j - 1], env, path))
            i = j
        elif bare := re.match(r"[A-Za-z_][A-Za-z0-9_]*", value[i + 1:]):
            out.append(env.get(bare.group(0), ""))
            i += 1 + bare.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _substitute(expr: str, env: dict[str, str], path: Path) -> str:
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])(.*))?$", expr, re.S)
    if not m:
        raise ComposeError(f"{path}: invalid variable substitution `${{{expr}}}`.")
    name, colon, op, arg = m.groups()
    present = name in env and (env[name] != "" or not colon)
    if present:
        return env[name]
    if op == "-":
        return _interpolate(arg, env, path)
    if op == "?":
        raise ComposeError(f"{path}: variable {name} is required: {arg or 'it is not set'}.")
    return ""


# `docker compose` run beside a file of a default name also merges the first override file it finds
_DEFAULT_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_OVERRIDES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
              "docker-compose.override.yml")
OVERRIDE_NAMES = {name: _OVERRIDES for name in _DEFAULT_NAMES}
_MAPPING_KEYS = {"environment", "labels", "annotations", "sysctls", "args"}  # list or mapping: merged by key
_REPLACED_KEYS = {"command", "entrypoint", "test"}  # sequences an override replaces whole


def override_file(path: Path) -> Path | None:
    """The override file Compose merges into ``path`` (``docker-compose.override.yml`` beside a
    ``docker-compose.yml``, and the like), or None."""
    if path.name not in OVERRIDE_NAMES:
        return None
    return next((path.parent / n for n in OVERRIDE_NAMES[path.name] if (path.parent / n).is_file()), None)


def _merge(base: Any, over: Any, key: Any = None) -> Any:
    """Compose's merge of an override into a file: mappings recursively, KEY=VALUE lists by
    key, command/entrypoint replaced, other sequences appended (without repeats)."""
    if key in _MAPPING_KEYS and isinstance(base, (dict, list)) and isinstance(over, (dict, list)):
        return {**as_dict(base, key), **as_dict(over, key)}
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base[k], v, k) if k in base else v for k, v in over.items()}}
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED_KEYS:
        return base + [v for v in over if v not in base]
    return over


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ComposeError(f"{path}: the compose file cannot be read ({exc.strerror or exc}). Give the path "
                           "of your docker-compose.yml.") from None
    except UnicodeDecodeError:
        raise ComposeError(f"{path}: not a text file (not UTF-8); give the path of your docker-compose.yml.") from None
    except yaml.YAMLError as exc:  # where, and what: never the line itself (it may hold a password)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ComposeError(f"{path}: not valid YAML{where}: {problem}.") from None
    except RecursionError:
        raise ComposeError(f"{path}: nested too deeply to be a Docker Compose file.") from None


def _check_shape(doc: dict, path: Path | str) -> dict:
    """The parts of a compose document we read, shaped as the Compose spec says (Compose
    refuses the rest too): one ComposeError naming the key otherwise."""
    def bad(key: str, allowed: str) -> ComposeError:
        return ComposeError(f"{path}: `{key}` must be {allowed} (the Compose file format).")

    for name, svc in doc["services"].items():
        where = f"services.{name}"
        if not isinstance(svc, dict):
            raise bad(where, "a mapping")
        for key in ("ports", "volumes"):
            if svc.get(key) is not None and not isinstance(svc[key], list):
                raise bad(f"{where}.{key}", "a list")
        for entry in svc.get("ports") or []:
            if isinstance(entry, dict) and "target" not in entry:
                raise bad(f"{where}.ports", "a list of `HOST:CONTAINER` strings or mappings with `target`")
        for entry in svc.get("volumes") or []:
            if isinstance(entry, dict) and "target" not in entry:
                raise bad(f"{where}.volumes", "a list of `SOURCE:TARGET` strings or mappings with `target`")
        for key in ("environment", "labels"):
            if svc.get(key) is not None and not isinstance(svc[key], (dict, list)):
                raise bad(f"{where}.{key}", "a mapping or a list of KEY=VALUE strings")
        env_file = svc.get("env_file")
        if env_file is not None and not isinstance(env_file, (str, list, dict)):
            raise bad(f"{where}.env_file", "a path or a list of paths")
        if svc.get("image") is not None and not isinstance(svc["image"], str):
            raise bad(f"{where}.image", "an image reference such as letta/letta:0.16.2")
    for section in ("networks", "volumes"):
        value = doc.get(section)
        if value is not None and (not isinstance(value, dict)
                                  or not all(v is None or isinstance(v, dict) for v in value.values())):
            raise bad(section, "a mapping of names to mappings")
    return doc


def load(compose_path: str | os.PathLike) -> dict:
    """The compose file with variables substituted as Docker Compose would (environment
    first, then the .env file beside it), merged with its override file when Compose would."""
    path = Path(compose_path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
        raise ComposeError(f"{path}: no `services:` mapping; this is not a Docker Compose file.")
    env = {**env_file_values(path.parent / ".env"), **os.environ}
    doc = _interpolate(doc, env, path)
    override = override_file(path)
    if override is not None:
        extra = _read_yaml(override)
        if extra is not None:
            if not isinstance(extra, dict) or not isinstance(extra.get("services", {}), dict):
                raise ComposeError(f"{override}: not a Docker Compose override file (Compose merges it into "
                                   f"{path.name}): its top level and `services:` must be mappings.")
            doc = _merge(doc, _interpolate(extra, env, override))
            if not isinstance(doc.get("services"), dict):
                raise ComposeError(f"{override}: its `services:` replaces the one of {path.name}; it must be a mapping.")
    return _check_shape(doc, f"{path} (with {override.name} merged in)" if override else path)


def as_dict(value: Any, key: Any = "a mapping") -> dict[str, str]:
    """A compose mapping written either as a mapping or as a list of KEY=VALUE strings."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if value is not None and not isinstance(value, list):
        raise ComposeError(f"`{key}` must be a mapping or a list of KEY=VALUE strings, not a {type(value).__name__}.")
    result = {}
    for item in value or []:
        k, _, val = str(item).partition("=")
        result[k] = val
    return result


def service_environment(doc: dict, service: str, directory: Path) -> dict[str, str]:
    """A service's environment: its env_file(s), then its `environment:` entries."""
    svc = doc["services"][service]
    env: dict[str, str] = {}
    env_files = svc.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        file = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(file, str) or not file:
            raise ComposeError(f"service `{service}`: each `env_file` must be a path (or a mapping with `path`).")
        env.update(env_file_values(directory / file))
    env.update(as_dict(svc.get("environment"), f"services.{service}.environment"))
    return env


def letta_service(doc: dict, path: Path) -> tuple[str, str]:
    """(service, image) of the service that runs a Letta server image."""
    found = [(name, svc["image"]) for name, svc in doc["services"].items()
             if isinstance(svc, dict) and isinstance(svc.get("image"), str) and ImageRef.parse(svc["image"]).is_letta]
    if not found:
        raise ComposeError(
            f"{path}: no service runs a Letta server image ({', '.join(LETTA_REPOSITORIES)}); services: "
            f"{', '.join(map(str, doc['services']))}. The suite reads the Letta version to test from that image's tag.")
    if len(found) > 1:
        raise ComposeError(f"{path}: services {', '.join(str(n) for n, _ in found)} all run a Letta server image; "
                           "the suite tests one Letta server per compose file.")
    return found[0]


def letta_image_tag(compose_path: str | os.PathLike, doc: dict | None = None) -> tuple[str, str, str | None]:
    """(service, image, version) of the Letta server in a compose file (``doc``: it, already
    loaded). ``version`` is the image's release tag, or None when the image names no release
    (``latest``, a digest only)."""
    path = Path(compose_path)
    service, image = letta_service(load(path) if doc is None else doc, path)
    ref = ImageRef.parse(image)
    version = ref.tag.removeprefix("v") if ref.tag and RELEASE_TAG.match(ref.tag) else None
    return service, image, version


# -- pinning -------------------------------------------------------------------------------
def _unpinned(service: str, image: str, *, letta: bool) -> str | None:
    """Why ``image`` is not pinned, or None when it is."""
    ref = ImageRef.parse(image)
    if ref.digest:
        return None
    if ref.tag is None:
        why = "has no tag, so Docker runs `latest`, which moves to every new release"
    elif ref.tag == "latest":
        why = "uses the tag `latest`, which moves to every new release"
    elif letta and not RELEASE_TAG.match(ref.tag):
        why = f"uses the tag `{ref.tag}`, which is not a Letta release and can move"
    else:
        return None
    if letta:
        example = f"{ref.repository}:{versions.known_server_versions()[-1]}"
        return (f"service `{service}` runs `{image}`, which {why}: the next `docker compose pull` or `up` can start "
                f"a newer Letta server on a database nobody migrated for it (how the 0.11.3 to 0.16.2 incident "
                f"happened). Pin it to a release, e.g. `image: {example}`, or to a digest "
                f"(`{example}@sha256:<digest>`); `letta-compat versions` lists the releases")
    return (f"service `{service}` runs `{image}`, which {why}. Pin it to a fixed tag or a digest "
            f"(e.g. `{ref.repository}:<version>` or `{ref.repository}@sha256:<digest>`)")


def check_pinned(compose_path: str | os.PathLike, doc: dict | None = None) -> tuple[str, str, str | None]:
    """Refuse a compose file whose Letta image (or any image on `latest`) can move;
    returns ``letta_image_tag`` of it otherwise (``doc``: the file, already loaded)."""
    path = Path(compose_path)
    doc = load(path) if doc is None else doc
    service, image = letta_service(doc, path)
    problems = []
    for name, svc in doc["services"].items():
        if isinstance(svc, dict) and isinstance(svc.get("image"), str):
            why = _unpinned(name, svc["image"], letta=name == service)
            if why:
                problems.append(why)
    if problems:
        override = override_file(path)
        merged = f" (with {override.name} beside it merged in, as `docker compose` does)" if override else ""
        raise UnpinnedImageError(f"{path}{merged}: " + "; ".join(problems) + ". Nothing was started.")
    return letta_image_tag(path, doc)


def compose_matrix(compose_path: str | os.PathLike, matrix: Matrix | None) -> Matrix:
    """The matrix of a ``--letta-compose`` run: one [[server]] entry, the compose file's
    Letta version (secure when its SECURE=true), on the docker backend; the given matrix's
    upgrades, Letta Code versions and known incompatibilities are kept."""
    path = Path(compose_path)
    doc = load(path)  # once: the pins and the environment are read from it
    service, image, version = check_pinned(path, doc)
    if version is None:
        raise ComposeError(f"{path}: service `{service}` pins `{image}` by digest only, so the suite cannot tell "
                           f"which Letta release it is. Write the release tag too, e.g. "
                           f"`{ImageRef.parse(image).repository}:0.16.2@sha256:...`.")
    versions.require_server_release(version, f"{path}: service `{service}` runs Letta", ComposeError)
    env = service_environment(doc, service, path.parent)
    secure = env.get("SECURE", "false").lower() == "true"
    base = matrix or Matrix(path=path, name=path.stem, backend="docker", postgres=PostgresSpec())
    return dataclasses.replace(
        base, backend="docker", servers=(ServerEntry(version, "docker", secure),),
        upgrades=tuple(dataclasses.replace(u, backend="docker") for u in base.upgrades))
