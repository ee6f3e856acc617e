"""The CI gate: when a change moves the Letta image tag in a compose file, run the upgrade
path old -> new (and the matrix's Letta Code versions) before it merges.

Pytest-free: it writes a matrix for the path and runs the suite in a pytest subprocess.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from packaging.version import Version

from .. import versions
from ..errors import LettaCompatError
from ..matrix.compose_file import OVERRIDE_NAMES, check_pinned, letta_image_tag
from ..matrix.model import load_matrix
from ..matrix.writer import derived_matrix
from ..paths import report_files
from .git import git, git_output, repository_root
from .grid import Report
from .measure import run_suite



def require_base_ref(compose: Path, ref: str) -> None:
    """One line when ``ref`` names no commit of the compose file's repository (no git: nothing to say)."""
    where = repository_root(compose)
    if where is None:
        return
    if git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], where).returncode == 0:
        return
    commits = git(["rev-list", "--count", "HEAD"], where)
    single = commits.returncode == 0 and commits.stdout.strip() == "1"
    raise LettaCompatError(
        f"--base-ref {ref} names no commit in {where}"
        + (" (the repository has a single commit, so there is nothing before HEAD)" if single else "")
        + ". Give the commit or branch to compare with, e.g. --base-ref origin/main in a pull request; in CI, "
          "check out with fetch-depth: 0.")


def version_at_ref(compose: Path, ref: str) -> str | None:
    """The Letta release the compose file pinned at ``ref`` (None: unpinned there)."""
    top = repository_root(compose)
    if top is None:
        raise LettaCompatError(f"{compose} is not in a git repository: the gate compares it with --base-ref there.")
    rel = compose.resolve().relative_to(top)
    text = git_output(["show", f"{ref}:{rel.as_posix()}"], top)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / compose.name
        old.write_text(text)
        env = compose.parent / ".env"  # the .env beside it resolves ${...} in the old file too
        if env.exists():
            (Path(tmp) / ".env").write_text(env.read_text())
        if compose.name in OVERRIDE_NAMES:  # the override file of that commit, as compose merges it
            for name in OVERRIDE_NAMES[compose.name]:
                shown = git(["show", f"{ref}:{(rel.parent / name).as_posix()}"], top)
                if shown.returncode == 0:
                    (Path(tmp) / name).write_text(shown.stdout)
        return letta_image_tag(old)[2]


def path_matrix(old: str, new: str, base_matrix: Path | None) -> str:
    """Matrix TOML for the upgrade path; Letta Code versions, PostgreSQL and declared
    incompatibilities come from ``base_matrix`` when given."""
    return derived_matrix(f"gate-{old}-to-{new}", base_matrix, servers=(old, new), upgrades=[(old, new)])


def run_gate(compose: str | Path, *, base_ref: str = "HEAD~1", from_version: str | None = None,
             matrix: str | Path | None = None, suite: str | Path | None = None,
             pytest_args: list[str] | None = None, report: str | None = None, echo=print,
             letta_code_from: str | None = None, letta_code_to: str | None = None) -> int:
    from .letta_code_gate import letta_code_bump, run_letta_code_gate, server_replaced

    compose = Path(compose)
    if from_version is not None:
        versions.require_server_release(from_version, "--from")
    if report:
        report_files(report, "--report")  # a report path that cannot be written fails now, not after the run
    if matrix:
        load_matrix(matrix, require_entries=False)  # a broken --matrix fails now, as one line
    service, image, new = check_pinned(compose)  # refuses `latest` and friends first
    if new is None:
        raise LettaCompatError(f"{compose}: service `{service}` pins `{image}` by digest only; add the release tag "
                               "so the gate knows which version it is.")
    if from_version is None or letta_code_from is None:  # the base ref is read for what they do not say
        require_base_ref(compose, base_ref)
    replaced = server_replaced(compose, base_ref) if letta_code_to is None else None
    if replaced:
        echo(f"NOT compatible: {replaced}")
        if report:
            Report(matrix=str(compose), note=f"NOT compatible: {replaced}").write(report)
        return 1
    lc_bump = letta_code_bump(compose, base_ref, letta_code_from, letta_code_to)  # the pinned Letta Code moves?
    old = from_version or version_at_ref(compose, base_ref)
    if old is None:
        raise LettaCompatError(
            f"{compose} at {base_ref} did not pin its Letta image, so the gate cannot tell which version the "
            "database holds today. Say it with --from VERSION (`curl /v1/health/` on the running server).")
    if old == new and lc_bump:
        return run_letta_code_gate(new, lc_bump, matrix=Path(matrix) if matrix else None, suite=suite,
                                   report=report, pytest_args=pytest_args, echo=echo)
    if old == new:
        said = f"Letta image of `{service}` unchanged ({new}) since {base_ref}: nothing to check."
        echo(said)
        if report:  # CI steps after the gate (`cat letta-report.md`) find a report either way
            Report(matrix=str(compose), note=said).write(report)
        return 0
    versions.require_server_release(old, f"{compose} at {base_ref}" if from_version is None else "--from")
    versions.require_server_release(new, f"{compose} (service `{service}`, image `{image}`)")
    if Version(new) < Version(old):
        echo(f"`{service}` moves Letta DOWN from {old} to {new}: Letta's migrations only go forward; "
             "roll back with `letta-compat rollback` and a backup instead.")
        return 1
    if suite and not Path(suite).exists():
        raise LettaCompatError(f"--suite {suite}: no such file or directory. Leave it out to run the "
                               "compatibility suite shipped with pytest-letta-compat.")
    echo(f"`{service}` moves Letta from {old} to {new} (since {base_ref}): running the upgrade path.")
    text = path_matrix(old, new, Path(matrix) if matrix else None)
    if lc_bump and f'version = "{lc_bump[1].version}"' not in text:  # and the new Letta Code with it
        text += f'[[letta_code]]\nversion = "{lc_bump[1].version}"\n'
    returncode = run_suite(text, name="gate", suite=suite, report=report, pytest_args=pytest_args)
    if returncode == 0:
        echo(f"Upgrade {old} -> {new}: compatible.")
    else:
        echo(f"Upgrade {old} -> {new}: NOT compatible (pytest exit {returncode}); do not merge this bump.")
    return 0 if returncode == 0 else 1
