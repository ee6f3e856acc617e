"""Progress lines for long work: one line when a phase starts, one with its elapsed time when
it ends; in pytest's terminal (hidden by -q) and on the CLI's stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_letta_compat.cache import cache_root, locked
from pytest_letta_compat import progress


def test_a_phase_says_when_it_starts_and_how_long_it_took():
    lines: list[str] = []
    with progress.reporting_to(lines.append):
        with progress.phase("installing X", done="installed"):
            pass
        with pytest.raises(RuntimeError), progress.phase("alembic upgrade head"):
            raise RuntimeError("boom")
    progress.emit("nobody listens")
    assert lines[0] == "installing X …"
    assert lines[1].startswith("installing X: installed in ") and lines[1].endswith(" s")
    assert lines[3].startswith("alembic upgrade head: failed after ")
    assert len(lines) == 4
    assert progress.bar(5, 10, width=10) == "[#####-----] 5/10"


def test_waiting_for_a_lock_another_process_holds_is_reported(tmp_path):
    target = tmp_path / "servers" / "9.9.9"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from filelock import FileLock; "
                               f"l = FileLock({str(target) + '.lock'!r}); l.acquire(); print('held', flush=True); "
                               "time.sleep(1.5)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lines: list[str] = []
    with progress.reporting_to(lines.append), locked(target):
        pass
    holder.wait(30)
    assert lines[0] == f"waiting for the lock on {target} (another run's, or this run's install ahead) …"
    assert lines[1].startswith(f"waiting for the lock on {target} (another run's, or this run's install ahead): "
                               "got it in ")


INNER = """
from pytest_letta_compat import progress

def test_long_work():
    with progress.phase("pretend install of Letta 9.9.9", done="installed"):
        pass
"""


def test_pytest_shows_phases_unless_quiet(pytester: pytest.Pytester):
    pytester.makepyfile(test_inner=INNER)
    out = pytester.runpytest_subprocess("-o", "letta_suite=false", "-p", "no:cacheprovider").stdout.str()
    assert "letta-compat: pretend install of Letta 9.9.9 …" in out
    assert "letta-compat: pretend install of Letta 9.9.9: installed in " in out
    quiet = pytester.runpytest_subprocess("-q", "-o", "letta_suite=false", "-p", "no:cacheprovider").stdout.str()
    assert "pretend install" not in quiet


def test_the_cli_reports_phases_on_stderr(tmp_path):
    """`install` with the server already cached: the migration scripts' download is the phase
    (pointed at a closed port, so it fails at once)."""
    real = cache_root() / "servers" / "0.16.8"
    if not (real / ".letta-compat-installed").exists():
        pytest.skip("needs Letta 0.16.8 in the cache (letta-compat install 0.16.8)")
    cache = tmp_path / "cache"
    (cache / "servers").mkdir(parents=True)
    (cache / "servers" / "0.16.8").symlink_to(real)
    env = {**os.environ, "LETTA_COMPAT_PYPI_SIMPLE": "http://127.0.0.1:9/simple"}
    exe = Path(sys.executable).with_name("letta-compat")
    proc = subprocess.run([str(exe), "--cache-dir", str(cache), "install", "0.16.8"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "letta-compat: downloading Letta's migration scripts (letta-0.16.8.tar.gz) …" in proc.stderr
    assert "letta-compat: downloading Letta's migration scripts (letta-0.16.8.tar.gz): failed after" in proc.stderr
    assert "Traceback" not in proc.stderr
