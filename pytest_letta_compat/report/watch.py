"""``letta-compat watch``: the operator's matrix against the newest Letta Code release the
registries publish (the scheduled job of the workflow ``init`` writes), so a new
incompatibility is known before anyone bumps. Pytest-free: the suite runs in a subprocess."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from .. import versions_letta_code as lc
from ..errors import LettaCompatError
from ..matrix.model import load_matrix
from ..matrix.writer import derived_matrix
from .measure import run_suite


def newest_letta_code() -> str:
    """The newest release the registries publish, or the shipped table's when they cannot be asked."""
    published = [v for v in lc.registry_answer().versions if lc.is_known(v)]
    return max([*published, lc.newest()], key=Version)


def run_watch(matrix: str | Path, *, report: str | None = None, pytest_args: list[str] | None = None,
              echo=print) -> int:
    loaded = load_matrix(matrix, require_entries=False)
    servers = [s.version for s in loaded.servers]
    if not servers:
        raise LettaCompatError(f"{matrix} has no [[server]] entry: the watch runs the newest Letta Code against the "
                               "server you run today (letta-compat init writes it).")
    answer = lc.registry_answer()
    if answer.offline and not answer.versions:
        echo(f"the registries could not be asked ({answer.offline}): watching the newest release of the shipped "
             f"table, {lc.newest()}, instead")
    newest = newest_letta_code()
    known = {e.version for e in loaded.letta_code}
    echo(f"newest Letta Code: {newest}" + (" (already in your matrix)" if newest in known else
                                          " (not in your matrix yet)") + f"; running it against Letta "
         f"{', '.join(servers)}")
    text = derived_matrix(f"watch-letta-code-{newest}", Path(matrix), servers=servers, letta_code=[newest])
    returncode = run_suite(text, name="watch", checks=("letta_code",), report=report, pytest_args=pytest_args)
    if returncode == 0:
        echo(f"Letta Code {newest} works with your Letta {', '.join(servers)}.")
        return 0
    echo(f"NEW INCOMPATIBILITY: Letta Code {newest} fails against your Letta {', '.join(servers)} (pytest exit "
         f"{returncode}). Do not bump Letta Code to {newest}; the report names the failing checks.")
    return 1
