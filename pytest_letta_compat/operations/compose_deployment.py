"""An operator's Docker Compose stack, read as `docker compose` would read it: which service
runs Letta and on which release, where that release is written (the file, an override file,
or a ``${VAR}`` in ``.env``), its database and credentials, its published port and the
compose project name. Reading only: nothing runs here (compose_upgrade.py acts on it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .. import versions
from ..errors import register_secret
from ..matrix import compose_file as compose
from ..matrix.compose_file import ComposeError, ImageRef
from ..postgres.client import dsn_params

LETTA_PORT = 8283
PG_PORT = 5432


@dataclass(frozen=True)
class PinSource:
    """Where the Letta release is written: ``file`` line ``line`` (1-based) holds ``text``;
    ``variable`` when the image is ``...:${VAR}`` and VAR is set in that file (``.env``)."""

    file: Path
    line: int
    text: str
    variable: str | None = None

    def rewritten(self, old: str, new: str) -> str:
        """The line with the release ``old`` replaced by ``new`` (a ``v`` prefix kept)."""
        pattern = re.compile(rf"(?<![\w.])(v?){re.escape(old)}(?![\w.])")
        if not pattern.search(self.text):
            raise ComposeError(f"{self.file}:{self.line} no longer says Letta {old}; it was edited meanwhile.")
        return pattern.sub(lambda m: m.group(1) + new, self.text, count=1)


@dataclass(frozen=True)
class DatabaseRef:
    """Letta's database: a service of the file (``service``), or a host outside it."""

    service: str | None
    host: str
    port: int
    user: str
    password: str
    name: str

    def dsn(self, host: str, port: int) -> str:
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}:{port}/"
                f"{quote(self.name, safe='')}")


@dataclass(frozen=True)
class ComposeDeployment:
    file: Path
    project: str
    service: str
    image: str
    version: str
    pin: PinSource
    database: DatabaseRef
    password: str | None  # the server password when SECURE=true
    encryption_key: str | None  # the service's LETTA_ENCRYPTION_KEY (a secret), for alembic's environment


def project_name(file: Path, doc: dict) -> str:
    """The project name `docker compose -f FILE` uses: $COMPOSE_PROJECT_NAME (environment, then
    .env), the file's top-level `name:`, else its directory's name, normalised as Compose does."""
    dotenv = compose.env_file_values(file.parent / ".env")
    name = os.environ.get("COMPOSE_PROJECT_NAME") or dotenv.get("COMPOSE_PROJECT_NAME") or doc.get("name") \
        or file.resolve().parent.name
    return re.sub(r"[^a-z0-9_-]", "", str(name).lower())


def _pin_source(file: Path, service: str, image: str) -> PinSource:
    """The line that sets the image's tag: in the compose file (or its override), or in .env."""
    candidates = [file] + ([o] if (o := compose.override_file(file)) else [])
    for path in reversed(candidates):  # an override wins
        lines = path.read_text(encoding="utf-8").splitlines()
        in_service, indent = False, None
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if re.match(rf"^\s*{re.escape(service)}\s*:\s*$", line):
                in_service, indent = True, len(line) - len(line.lstrip())
                continue
            if in_service and stripped and not stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent:
                in_service = False
            if in_service and re.match(r"^\s*image\s*:", line):
                variable = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", line)
                if variable is None:
                    return PinSource(path, number, line)
                return _variable_source(file, variable.group(1), service)
    raise ComposeError(f"{file}: the `image:` line of service `{service}` ({image}) was not found as a line of "
                       "its own; write it as `image: letta/letta:<release>` so it can be changed in place.")


def _variable_source(file: Path, name: str, service: str) -> PinSource:
    if name in os.environ:
        raise ComposeError(f"service `{service}` takes its image tag from ${name}, which is set in this shell's "
                           f"environment: unset it and keep it in {file.parent / '.env'}, which the upgrade edits.")
    dotenv = file.parent / ".env"
    lines = dotenv.read_text(encoding="utf-8").splitlines() if dotenv.is_file() else []
    for number, line in enumerate(lines, 1):
        if re.match(rf"^\s*(export\s+)?{re.escape(name)}\s*=", line):
            return PinSource(dotenv, number, line, name)
    raise ComposeError(f"service `{service}` takes its image tag from ${name}, which {dotenv} does not set: "
                       f"set {name}=<release> there, so the upgrade can change it in one place.")


def _database(doc: dict, env: dict[str, str], file: Path) -> DatabaseRef:
    uri = env.get("LETTA_PG_URI")
    if uri:  # Letta's spellings (postgresql+pg8000://, +asyncpg) read as every DSN of the package is
        params = dsn_params(uri, option=f"{file}: LETTA_PG_URI")
        host, port = params.get("host") or "localhost", int(params.get("port") or PG_PORT)
        user, password = params.get("user") or "letta", params.get("password", "")
        name = params.get("dbname") or "letta"
    else:
        host, port = env.get("LETTA_PG_HOST", ""), int(env.get("LETTA_PG_PORT") or PG_PORT)
        user, password = env.get("LETTA_PG_USER", "letta"), env.get("LETTA_PG_PASSWORD", "")
        name = env.get("LETTA_PG_DB", "letta")
        if not host:
            raise ComposeError(f"{file}: the Letta service sets neither LETTA_PG_URI nor LETTA_PG_HOST, so it runs "
                               "on the image's own embedded database; the compose upgrade needs PostgreSQL in a "
                               "service of the file (as Letta's compose.yaml has it) or an external DSN.")
    register_secret(password)
    return DatabaseRef(_service_named(doc, host), host, port, user, password, name)


def _service_named(doc: dict, host: str) -> str | None:
    """The service reachable as ``host`` inside the compose network: by name, hostname,
    container_name or network alias; None for a host outside the file."""
    for name, svc in doc["services"].items():
        aliases = {name, svc.get("hostname"), svc.get("container_name")}
        networks = svc.get("networks")
        if isinstance(networks, dict):
            for network in networks.values():
                if isinstance(network, dict):
                    aliases.update(network.get("aliases") or [])
        if host in aliases:
            return name
    return None


def read_deployment(file: str | os.PathLike, service: str | None = None) -> ComposeDeployment:
    """The stack of ``file`` (``service``: the Letta service, when the file's image is not
    letta/letta); a ComposeError in one line when it cannot be upgraded as it stands."""
    path = Path(file)
    doc = compose.load(path)
    if service is None:
        service, image = compose.letta_service(doc, path)
    elif service not in doc["services"]:
        raise ComposeError(f"{path}: no service `{service}`; services: {', '.join(map(str, doc['services']))}.")
    else:
        image = str(doc["services"][service].get("image") or "")
    pin = _pin_source(path, service, image)  # first: an unset ${VAR} is named as such
    ref = ImageRef.parse(image)
    tag = (ref.tag or "latest").removeprefix("v")
    if tag == "latest" or versions.server_release(tag) is None:
        raise ComposeError(f"{path}: service `{service}` runs `{image}`, which names no Letta release "
                           f"(`latest` or an unknown tag), so nothing tells which schema its database has. Pin "
                           f"the release that runs now (`letta-compat versions` lists them), then upgrade.")
    env = compose.service_environment(doc, service, path.parent)
    secure = env.get("SECURE", "false").lower() == "true"
    password = env.get("LETTA_SERVER_PASSWORD") or None
    register_secret(password)
    register_secret(env.get("LETTA_ENCRYPTION_KEY"))
    return ComposeDeployment(
        file=path.resolve(), project=project_name(path, doc), service=service, image=image, version=tag,
        pin=pin, database=_database(doc, env, path),
        password=password if secure else None, encryption_key=env.get("LETTA_ENCRYPTION_KEY") or None)
