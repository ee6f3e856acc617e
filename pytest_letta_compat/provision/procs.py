"""Child processes that never outlive the test run, and ephemeral ports.

Every server (PostgreSQL, Redis, Letta) is started through ``ManagedProcess``:
- its output goes through a pump that masks secrets and stamps each line with the UTC time it
  arrived before it reaches the log file;
- it gets PR_SET_PDEATHSIG, so the kernel stops it even if the test process is
  SIGKILLed or crashes, and ``stop_all`` runs at interpreter exit (Ctrl-C included).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LettaCompatError, ProvisioningError, StartTimedOut, StoppedDuringStart, redact

_PR_SET_PDEATHSIG = 1
_live: dict["ManagedProcess", None] = {}  # insertion-ordered
_live_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just handed out for port 0; callers retry if they lose the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_setup(death_signal: int, user: str | None) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    entry = pwd.getpwnam(user) if user else None

    def setup() -> None:
        os.setpgrp()  # our own group: a Ctrl-C in the terminal is handled by us, in order
        if entry is not None:
            os.setgid(entry.pw_gid)
            os.setgroups([])
            os.setuid(entry.pw_uid)
        # after setuid: changing credentials clears the parent-death signal
        libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() == 1:  # the parent already died while we were forking
            os._exit(1)

    return setup


class ManagedProcess:
    """One server process with a redacted log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str],
        cwd: Path,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 20.0,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = Path(cwd)
        self.user = user
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.popen: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        try:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=child_setup(self.stop_signal, self.user), close_fds=True,
            )
        except OSError as exc:
            raise ProvisioningError(
                f"Could not start {self.name} ({self.argv[0]}): {exc.strerror or exc}."
            ) from None
        with _live_lock:
            _live[self] = None
        self._pump = threading.Thread(target=self._pump_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()
        return self

    def _pump_output(self) -> None:
        assert self.popen and self.popen.stdout
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log:
            log.write(f"{log_stamp(full=True)} -- {self.name} started (pid {self.popen.pid})\n")
            log.flush()
            for raw in iter(self.popen.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                log.write(f"{log_stamp()} {redact(line)}" + ("" if line.endswith("\n") else "\n"))
                log.flush()
            code = self.popen.wait()
            log.write(f"{log_stamp(full=True)} -- {self.name} exited with code {code}\n")

    def wait_for_output(self, timeout: float = 5.0) -> None:
        """Let the pump write what an exited process printed last (it reads until EOF)."""
        if self._pump is not None:
            self._pump.join(timeout)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            kill_group(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.popen.pid)
                self.popen.wait(10)
        if self._pump is not None:
            self._pump.join(5)
        with _live_lock:
            _live.pop(self, None)


def log_stamp(*, full: bool = False) -> str:
    """The time a line reached us, in UTC: ``HH:MM:SS.mmm`` (``full``: with the date)."""
    now = time.time()
    text = time.strftime("%Y-%m-%dT%H:%M:%S" if full else "%H:%M:%S", time.gmtime(now))
    return f"{text}.{int(now % 1 * 1000):03d}" + ("Z" if full else "")


def _transient_errors() -> tuple[type[BaseException], ...]:
    """What a probe may raise while the thing it waits for is still starting: a refused or
    reset connection, a timeout, a server that does not answer SQL yet."""
    import httpx
    import psycopg

    return (OSError, httpx.TransportError, psycopg.OperationalError)


def wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = 0.25,
) -> float:
    """Poll ``probe`` until it is true; fail early if ``process`` dies. Returns seconds waited.

    A probe's connection errors mean "not yet"; our own errors (a probe that finds its
    container exited raises ``ProvisioningError``) end the wait at once, and so does any other
    exception, which is a bug rather than a server still starting."""
    start = time.monotonic()
    transient = _transient_errors()
    last_error: BaseException | None = None
    while True:
        try:
            if probe():
                return time.monotonic() - start
        except LettaCompatError:
            raise
        except transient as exc:  # refused, reset, timed out: not up yet
            last_error = exc
        if process is not None and not process.running():
            code = process.popen.returncode if process.popen else None
            process.wait_for_output()
            raise StoppedDuringStart(
                f"{process.name} exited with code {code} {time.monotonic() - start:.1f} s into waiting for "
                f"{what}. Last lines of its log ({process.log_path}):\n{process.log_tail(40)}"
            )
        if time.monotonic() - start > timeout:
            last = f" The last probe failed with: {type(last_error).__name__}: {last_error}." if last_error else ""
            tail = f" Last lines of its log ({process.log_path}):\n{process.log_tail(40)}" if process else ""
            raise StartTimedOut(f"Timed out after {timeout:.0f} s waiting for {what}.{last}{tail}")
        time.sleep(interval)


def stop_all() -> None:
    """Stop every process still running, newest first."""
    with _live_lock:
        procs = list(_live)
    for proc in reversed(procs):
        try:
            proc.stop()
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass


atexit.register(stop_all)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group ``pid`` leads (children started with child_setup lead
    their own), so nothing it spawned outlives it; a group already gone is fine."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def on_a_free_port(what: str, start: Callable[[int], "ManagedProcess"],
                   wait: Callable[[int, "ManagedProcess"], None], *, bind_error: str, log: Path,
                   attempts: int = 5) -> tuple[int, "ManagedProcess"]:
    """(port, process) of a server started by ``start(port)`` on a port free_port picked and
    ready by ``wait(port, process)``; picked again while another process took the port between
    the pick and the bind (the server's log then says ``bind_error``)."""
    for _attempt in range(attempts):
        port = free_port()
        process = start(port)
        try:
            wait(port, process)
            return port, process
        except ProvisioningError:
            process.stop()
            if bind_error not in process.log_tail(20):
                raise
    raise ProvisioningError(f"{what} could not bind a free port; see {log}.")
