"""What ``letta-compat init`` writes into an operator's repository.

From the Letta release they run today (read from their compose file, or given), a
``letta-matrix.toml`` pinned to it with an upgrade path to each newer known release and the
Letta Code versions they name, and a GitHub Actions workflow that runs the CI gate
(``letta-compat gate``) with the shipped suite whenever the compose file changes.
Pytest-free and argparse-free: the CLI (``cli/init.py``) only parses arguments and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .. import __version__, versions, versions_letta_code
from ..errors import LettaCompatError
from ..paths import output_file
from ..self_wheel import WHEEL_NAME
from . import compose_file
from .writer import toml_value

MATRIX_FILE = "letta-matrix.toml"
WORKFLOW_FILE = Path(".github") / "workflows" / "letta-gate.yml"
REPORT_NAME = "letta-gate-report"
# the package is on no public index yet: init puts its own wheel here and the workflow installs it
WHEEL_DIR = ".letta-compat"
WORKFLOW_PYTHON = "3.11"  # the README's Python, the floor of requires-python

# Letta Code creates letta_v1_agent agents; a 0.11.x server has no such agent type.
_OLD_SERVER_LETTA_CODE = (
    "<0.12",
    "Letta Code creates letta_v1_agent agents, which Letta 0.11.x refuses: POST /v1/agents/ answers 422 "
    "and the CLI exits 1 before its first turn",
)

# Breakages of the server releases themselves that the shipped suite checks (docs/breakages.md):
# (releases, check, reason), written into every matrix whose releases they touch, as the shipped
# matrices declare them (tests/unit/test_init.py holds the two to the same text), so an operator
# who does not use the broken feature still gets a green gate.
RELEASE_INCOMPATIBILITIES = (
    (">=0.16.2", "ollama",
     "letta#3142: with OLLAMA_BASE_URL=http://host:11434 (no /v1) a new agent on ollama/<model> answers 404 page "
     "not found: its chat goes to <OLLAMA_BASE_URL>/chat/completions. Created by handle on 0.16.4 (0.16.2: 400 "
     "already, OllamaProvider.default_prompt_formatter missing; fixed for handles in 0.16.5, which appends /v1); "
     "created with the llm_config GET /v1/models/ lists (as the ADE does) on every release from 0.16.2 to 0.16.8, "
     "whose listing keeps the raw base_url. Workaround from 0.16.4: OLLAMA_BASE_URL ending in /v1"),
    ("==0.16.2", "ollama_v1",
     "letta#3142: on 0.16.2 a new agent on ollama/<model> cannot be created by handle even with OLLAMA_BASE_URL "
     "ending in /v1: POST /v1/agents/ answers 400 (OllamaProvider.default_prompt_formatter 'Field required', "
     "fixed in 0.16.4 by letta 647283413). Created with the llm_config GET /v1/models/ lists, the agent answers"),
)


class InitError(LettaCompatError):
    """``init`` was asked for something it cannot write."""


@dataclass(frozen=True)
class Deployment:
    """What the operator runs today."""

    version: str
    secure: bool = False
    compose: str | None = None  # the compose file, relative to the repository root (posix)
    letta_code: tuple[str, ...] = ()
    install: str = f"./{WHEEL_DIR}/{WHEEL_NAME}"  # what the workflow's pip installs

    @property
    def newer_releases(self) -> list[str]:
        return [v for v in versions.known_server_versions() if Version(v) > Version(self.version)]


def _known_version(version: str, what: str) -> str:
    return versions.require_server_release(version, what, InitError).version


def _letta_code(names: list[str]) -> tuple[str, ...]:
    for v in names:
        if not versions.is_known_letta_code(v):
            raise InitError(f"--letta-code: {versions_letta_code.refusal(v)}")
    return tuple(dict.fromkeys(names))


def read_deployment(directory: Path, *, compose: str | os.PathLike | None = None, from_version: str | None = None,
                    letta_code: list[str] | tuple[str, ...] = ()) -> Deployment:
    """The deployment from ``compose`` (its pinned Letta image and SECURE setting) and/or
    ``from_version``; refuses an unpinned image exactly as ``check_pinned`` does."""
    if compose is None and from_version is None:
        raise InitError("init needs your Letta version: --compose FILE (your docker-compose.yml) or --from VERSION.")
    code = _letta_code(list(letta_code))
    if compose is None:
        return Deployment(_known_version(from_version, "--from"), letta_code=code)

    path = Path(compose)
    service, image, tagged = compose_file.check_pinned(path)  # refuses `latest` and friends
    try:
        relative = path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        raise InitError(f"--compose {path}: the file is outside {directory.resolve()}, where the workflow is "
                        "written; run init from the root of the repository that holds it.") from None
    if tagged and from_version and tagged != from_version:
        raise InitError(f"--from {from_version}: {path} runs `{image}` (Letta {tagged}); give one or the other.")
    version = tagged or from_version
    if version is None:
        raise InitError(f"{path}: service `{service}` pins `{image}` by digest only, so init cannot tell which "
                        "Letta release it is. Say it with --from VERSION (`curl /v1/health/` on the running "
                        "server answers it).")
    env = compose_file.service_environment(compose_file.load(path), service, path.parent)
    return Deployment(_known_version(version, f"{path}: the Letta image tag of service `{service}`"),
                      secure=env.get("SECURE", "false").strip().lower() == "true", compose=relative, letta_code=code)


def matrix_text(d: Deployment) -> str:
    """The operator's ``letta-matrix.toml``."""
    q = toml_value
    source = f"from {d.compose}" if d.compose else f"with --from {d.version}"
    lines = [
        f"# Written by `letta-compat init` {source}: the Letta release you run today, and an upgrade",
        "# path from it to each newer release pytest-letta-compat knows. Before a bump, run:",
        f"#   pytest --letta-matrix {MATRIX_FILE} --letta-suite",
        "# Delete [[upgrade]] entries for releases you will not move to: each starts two servers.",
        f"# Validate an edit with: letta-compat matrix check {MATRIX_FILE}",
        "# backend native: each server is installed from PyPI and run on an embedded PostgreSQL, no Docker;"
        + (f"\n# add --letta-compose {d.compose} to run your own compose stack instead." if d.compose else ""),
        'backend = "native"',
        "",
        "[postgres]",
        "version = 16  # embedded PostgreSQL with pgvector",
        "",
        "[[server]]",
        f"version = {q(d.version)}",
        f"secure = {'true' if d.secure else 'false'}",
    ]
    for new in d.newer_releases:
        lines += ["", "[[upgrade]]", f"from = {q(d.version)}", f"to = {q(new)}"]
    for spec, check, reason in RELEASE_INCOMPATIBILITIES:
        if any(Version(v) in SpecifierSet(spec) for v in (d.version, *d.newer_releases)):
            lines += ["", "[[known_incompatibility]]", f"server = {q(spec)}", f"check = {q(check)}",
                      f"reason = {q(reason)}"]
    if d.letta_code:
        for code in d.letta_code:
            lines += ["", "[[letta_code]]", f"version = {q(code)}"]
        spec, reason = _OLD_SERVER_LETTA_CODE
        if Version(d.version) in SpecifierSet(spec):
            lines += ["", "[[known_incompatibility]]", f"server = {q(spec)}",
                      f"letta_code = {q('>=' + min(d.letta_code, key=Version))}", 'check = "letta_code"',
                      f"reason = {q(reason)}"]
    else:
        newest = versions_letta_code.newest()
        lines += ["", "# The Letta Code CLI your users run against this server (init --letta-code VERSION):",
                  "# [[letta_code]]", f'# version = "{newest}"']
    return "\n".join(lines) + "\n"


def workflow_text(d: Deployment) -> str:
    """The GitHub Actions workflow that runs the gate when the compose file changes."""
    if d.compose is None:
        raise InitError("the CI gate watches a compose file: give --compose FILE.")
    template = resources.files(__package__).joinpath("templates/letta-gate.yml").read_text()
    for token, value in (("__COMPOSE__", d.compose), ("__MATRIX__", MATRIX_FILE),
                         ("__PACKAGE_VERSION__", __version__), ("__INSTALL__", d.install),
                         ("__PYTHON__", WORKFLOW_PYTHON)):
        template = template.replace(token, value)
    return template


def files_for(d: Deployment) -> dict[Path, str]:
    """Relative path -> content of every file init writes (no workflow without a compose file)."""
    files = {Path(MATRIX_FILE): matrix_text(d)}
    if d.compose is not None:
        files[WORKFLOW_FILE] = workflow_text(d)
    return files


def write(directory: Path, files: dict[Path, str], *, force: bool = False) -> list[Path]:
    """Write ``files`` under ``directory``; nothing at all when one exists and not ``force``."""
    existing = [p for p in files if (directory / p).exists()]
    if existing and not force:
        raise InitError(f"{', '.join(p.as_posix() for p in existing)} already exist{'s' if len(existing) == 1 else ''}"
                        " in " + str(directory.resolve()) + "; nothing was written. Use --force to replace "
                        f"{'it' if len(existing) == 1 else 'them'}.")
    for rel in files:  # a target that cannot be written fails before anything is written
        output_file(directory / rel, "--dir", "Give the root of your repository, a writable directory.")
    written = []
    for rel, text in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(rel)
    return written
