"""``letta-compat upgrade --compose FILE --to V``: the operator's compose stack upgraded in one
command, and put back by itself when any step fails.

verified backup (pg_dump + every agent) → stop the Letta service → migrate with our path (the
target's alembic head + fix-ups) → rewrite the pin (one line of the file or of .env; the
original kept beside it) → ``up -d`` the service → wait healthy → verify every agent against
the backup. Any failure after the stop restores the database from the backup, puts the old
pin back, starts the old service, verifies it, and says what failed. A run that was killed
leaves ``compose-upgrade.json`` in the backup directory; the next run puts the stack back first.

Docker Compose runs as the operator would run it (``-f FILE [-f OVERRIDE] -p PROJECT``); the
database is reached through its published port, or, when it publishes none, through a relay
container on the stack's network bound to an ephemeral port of 127.0.0.1 for the run's length.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from .. import versions
from ..backends.docker import relay
from ..backends.docker.compose_stack import CommandFailed, compose_command, run_logged
from ..errors import LettaCompatError, redact
from ..matrix import compose_file
from ..paths import write_text_atomic
from ..postgres.client import connect
from ..provision.procs import wait_until
from .compose_deployment import LETTA_PORT, PG_PORT, ComposeDeployment, read_deployment
from .rollback import rollback
from .upgrade import (UpgradeRequest, apply_upgrade, assess, ensure_backup, finish_upgrade, format_plan,
                      server_version)
from .verify import verify

Progress = Callable[[str], None]
STATE_FILE = "compose-upgrade.json"
PIN_BEFORE = "pin.before-upgrade"  # the pin's line as it was
UNFINISHED = ("stopped", "pinned", "rollback-failed")  # phases after which the stack may be down or half-migrated
ENCRYPTION_KEY_VARIABLE = "LETTA_COMPAT_STACK_ENCRYPTION_KEY"  # the stack's key, for alembic's environment only
HEALTHY_TIMEOUT = 600.0
RELAY_LABEL = "org.letta-compat.relay"  # =<compose project>: a relay a killed run left is removed by the next


class ComposeUpgradeError(LettaCompatError):
    """A compose upgrade that could not go on; the stack runs the old release (see the message)."""


class RehearsalNotIntact(ComposeUpgradeError):
    """--rehearse found what the upgrade would lose or change: nothing was changed."""


@dataclass
class ComposeUpgradeRequest:
    file: Path
    to_version: str
    backup_dir: Path
    cache: Path
    service: str | None = None
    rehearse: bool = False  # rehearse on a snapshot of the stack's database first (on this machine)


class StackCommands:
    """Docker Compose and Docker for one operator project; every call's output (masked) goes to
    ``log``."""

    def __init__(self, deployment: ComposeDeployment, log: Path | None):
        self.deployment, self.log = deployment, log  # log None: output kept only in error messages
        files = ["-f", str(deployment.file)]
        if (override := compose_file.override_file(deployment.file)) is not None:
            files += ["-f", str(override)]  # -f turns off Compose's own merge of the override
        self.compose = [*compose_command(), *files, "-p", deployment.project,
                        "--project-directory", str(deployment.file.parent)]
        self._relay: str | None = None
        self._dsn: str | None = None  # one way to the database per run (and at most one relay)

    @property
    def relayed(self) -> bool:
        """Whether the database is reached through a relay (it publishes no port)."""
        return self._relay is not None

    def run(self, argv: list[str], what: str, timeout: float = 600) -> str:
        try:
            return run_logged(argv, what, self.log, timeout)[0]
        except CommandFailed as failed:
            if failed.returncode is None:
                raise ComposeUpgradeError(f"`{what}` did not finish within {timeout:.0f} s (log: {self.log}).") from None
            said = [line.strip() for line in failed.output.splitlines() if line.strip()]
            last = said[-1][-400:] if said else "no output"  # Compose v1 prints its own traceback: its last line says why
            hint = (" Is Docker running here, and is DOCKER_HOST the engine of this stack?"
                    if re.search(r"server API version|Cannot connect to the Docker daemon", failed.output) else "")
            raise ComposeUpgradeError(f"`{what}` failed (exit {failed.returncode}): {last}.{hint}"
                                      + (f" Full output: {self.log}" if self.log else "")) from None

    def compose_run(self, *args: str, timeout: float = 600) -> str:
        return self.run([*self.compose, *args], f"docker compose {' '.join(args)}", timeout)

    def host_port(self, service: str, target: int) -> int | None:
        """The 127.0.0.1 port Docker publishes ``service``'s ``target`` on, or None."""
        try:
            out = self.compose_run("port", service, str(target), timeout=60).strip()
        except ComposeUpgradeError:
            return None
        port = out.rsplit(":", 1)[-1]
        return int(port) if port.isdigit() and port != "0" else None

    def container(self, service: str) -> str | None:
        ids = self.compose_run("ps", "-q", service, timeout=60).split()
        return ids[0] if ids else None

    def database_dsn(self) -> str:
        """Letta's database as this machine reaches it: its published port, or a relay."""
        if self._dsn is None:
            self._dsn = self._reach_database()
        return self._dsn

    def _reach_database(self) -> str:
        db = self.deployment.database
        if db.service is None:
            return db.dsn(db.host, db.port)
        port = self.host_port(db.service, db.port)
        if port is not None:
            return db.dsn("127.0.0.1", port)
        dsn = db.dsn("127.0.0.1", self._start_relay(db.service, db.host, db.port))

        def answers() -> bool:  # Docker's port accepts at once; the relay's python listens a moment later
            try:
                with connect(dsn, connect_timeout=5):
                    return True
            except LettaCompatError:
                return False

        wait_until(f"the relay to the database service `{db.service}`", answers, timeout=60, interval=1)
        return dsn

    def _start_relay(self, service: str, host: str, port: int) -> int:
        container = self.container(service)
        if container is None:
            raise ComposeUpgradeError(f"the database service `{service}` of {self.deployment.file} is not running: "
                                      "start the stack (`docker compose up -d`) and run the command again.")
        networks = json.loads(self.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                        container], "docker inspect (the database's network)", 60))
        network = next(iter(networks))
        source = Path(relay.__file__).read_text(encoding="utf-8")
        self._remove_relays()  # a killed run's
        self._relay = self.run(
            ["docker", "run", "-d", "--rm", "--label", self._relay_label, "--network", network,
             "-p", f"127.0.0.1::{PG_PORT}", "--entrypoint", "python3", self.deployment.image, "-c", source,
             "0.0.0.0", str(PG_PORT), host, str(port)], "docker run (a relay to the database)", 300).strip()
        out = self.run(["docker", "port", self._relay, f"{PG_PORT}/tcp"], "docker port (the relay)", 60)
        return int(out.split()[0].rsplit(":", 1)[-1])

    @property
    def _relay_label(self) -> str:
        return f"{RELAY_LABEL}={self.deployment.project}"

    def _remove_relays(self) -> None:
        listed = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={self._relay_label}"],
                                capture_output=True, text=True)
        for container in listed.stdout.split():
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)

    def close(self) -> None:
        if self._relay:
            self._remove_relays()
            self._relay, self._dsn = None, None

    def letta_url(self) -> str | None:
        port = self.host_port(self.deployment.service, LETTA_PORT)
        return f"http://127.0.0.1:{port}" if port else None

    def stop_letta(self) -> None:
        self.compose_run("stop", self.deployment.service)

    def start_letta(self) -> None:
        self.compose_run("up", "-d", "--no-deps", self.deployment.service)

    def wait_healthy(self, version: str, api_key: str | None, timeout: float = HEALTHY_TIMEOUT) -> str:
        """The Letta service's URL once it answers as ``version``."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            url = self.letta_url()
            if url is not None:
                try:
                    seen = server_version(url, api_key)
                except LettaCompatError:
                    seen = None
                if seen == version:
                    return url
            time.sleep(2)
        raise ComposeUpgradeError(f"the service `{self.deployment.service}` did not answer as Letta {version} within "
                                  f"{timeout:.0f} s (last seen: {seen or 'nothing'}); its log: `docker compose logs "
                                  f"{self.deployment.service}` (this run's: {self.log})")


@contextmanager
def stack_endpoints(file: str | os.PathLike, service: str | None = None, *,
                    database: bool = True) -> Iterator[tuple[str, str | None, str | None]]:
    """(Letta's URL, its password, its database's DSN or None without ``database``) as this
    machine reaches a running compose stack, for the commands that read it (backup,
    move-to-local); a relay, when one was needed, is removed at the end."""
    deployment = read_deployment(file, service)
    commands = StackCommands(deployment, None)
    try:
        url = commands.letta_url()
        if url is None:
            raise ComposeUpgradeError(f"service `{deployment.service}` of {deployment.file} publishes no port for "
                                      f"{LETTA_PORT}, or is not running: start the stack (`docker compose up -d`).")
        yield url, deployment.password, commands.database_dsn() if database else None
    finally:
        commands.close()


# -- the pin -------------------------------------------------------------------------------------
def _write_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ending = lines[number - 1][len(lines[number - 1].rstrip("\r\n")):]
    lines[number - 1] = text + ending
    write_text_atomic(path, "".join(lines), mode=path.stat().st_mode & 0o777)  # a 0600 .env stays 0600


def rewrite_pin(deployment: ComposeDeployment, to_version: str, backup_dir: Path) -> str:
    """Change the one line that pins the release; that line as it was is kept in the backup
    directory (``pin.before-upgrade``). Returns the new line."""
    pin = deployment.pin
    # the line as it was, never a copy of the whole file: an .env holds passwords
    write_text_atomic(backup_dir / PIN_BEFORE, f"{pin.file}:{pin.line}: {pin.text}\n", mode=0o600)
    new = pin.rewritten(deployment.version, to_version)
    _write_line(pin.file, pin.line, new)
    return new


def restore_pin(deployment: ComposeDeployment) -> None:
    _write_line(deployment.pin.file, deployment.pin.line, deployment.pin.text)


# -- the run ------------------------------------------------------------------------------------
class ComposeUpgrade:
    def __init__(self, request: ComposeUpgradeRequest, progress: Progress = print):
        self.request, self.progress = request, progress
        request.backup_dir = Path(request.backup_dir)
        self.workdir = request.backup_dir  # the run's log and state, and the pin as it was
        self.backup = request.backup_dir / "backup"  # the verified backup: every agent and the pg_dump
        self.state_path = self.workdir / STATE_FILE
        self.deployment = read_deployment(request.file, request.service)
        self.interrupted = self._interrupted()
        if self.interrupted is not None:  # the file may pin the target already: the stack as it was before
            pin = dataclasses.replace(self.deployment.pin, file=Path(self.interrupted["pin_file"]),
                                      line=int(self.interrupted["pin_line"]), text=self.interrupted["pin_text"])
            self.deployment = dataclasses.replace(self.deployment, version=self.interrupted["from"], pin=pin)
        self._check_target()

    def _interrupted(self) -> dict | None:
        """The state a killed run left (after it stopped the service and before it finished or
        rolled back), or None."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        same = state.get("file") == str(self.deployment.file)
        return state if same and state.get("phase") in UNFINISHED else None

    def _check_target(self) -> None:
        d, to = self.deployment, self.request.to_version
        versions.require_server_release(to, "--to")
        if Version(to) < Version(d.version):
            raise ComposeUpgradeError(f"--to {to} is older than the Letta {d.version} service `{d.service}` of "
                                      f"{d.file} runs: a downgrade cannot run a newer schema. To go back, use "
                                      "`letta-compat rollback` with the backup taken before the upgrade.")
        if to == d.version:
            raise ComposeUpgradeError(f"service `{d.service}` of {d.file} already runs Letta {to}: nothing to do.")

    def _upgrade_request(self, dsn: str, url: str) -> UpgradeRequest:
        d = self.deployment
        key_env = None
        if d.encryption_key:  # UpgradeRequest takes the key by the name of a variable that holds it
            os.environ[ENCRYPTION_KEY_VARIABLE] = d.encryption_key
            key_env = ENCRYPTION_KEY_VARIABLE
        return UpgradeRequest(d.version, self.request.to_version, dsn, url, self.backup,
                              self.request.cache, api_key=d.password, encryption_key_env=key_env)

    def _stack_facts(self, dsn_source: str, url: str | None) -> list[str]:
        d = self.deployment
        pin = d.pin
        where = (f"${pin.variable} in {pin.file}:{pin.line}" if pin.variable else f"{pin.file}:{pin.line}")
        return [f"Compose stack {d.file} (project {d.project})",
                f"  Letta:    service `{d.service}`, {d.image} (release {d.version}, pinned at {where}), "
                f"{url or 'not answering'}",
                f"  database: {('service `' + d.database.service + '`') if d.database.service else d.database.host}, "
                f"database {d.database.name}, reached {dsn_source}"]

    def plan(self) -> str:
        commands = StackCommands(self.deployment, self._log_path())
        try:
            if self.interrupted is not None:
                return (f"A previous run of this upgrade stopped at `{self.interrupted['phase']}` without finishing "
                        f"(killed?). With --apply, this command first puts the stack back on Letta "
                        f"{self.deployment.version} (the database from {self.backup}, the pin, the "
                        "service), verifies every agent, then upgrades again.")
            dsn = commands.database_dsn()
            url = commands.letta_url() or "http://127.0.0.1:9"
            found = assess(self._upgrade_request(dsn, url))
            lines = self._stack_facts(self._reached(commands), commands.letta_url())
            lines.append(format_plan(found))
            if self.request.rehearse:
                lines += self._rehearsal(dsn, found.request.encryption_key_env)
            lines.append(f"With --apply: back up, stop `{self.deployment.service}`, migrate, pin "
                         f"{self.request.to_version} in {self.deployment.pin.file.name}, start it, verify every agent; "
                         "on any failure the database, the pin and the old service come back by themselves.")
            return redact("\n".join(lines))
        finally:
            commands.close()

    def _rehearsal(self, dsn: str, encryption_key_env: str | None) -> list[str]:
        """`letta-compat rehearse` on a snapshot of the stack's database (read once, never changed),
        on this machine; its report's lines. ComposeUpgradeError when the letta-compat path is
        not intact: nothing has been changed then."""
        from ..report.rehearsal import format_report
        from .rehearse import rehearse
        from .rehearse_request import RehearsalRequest

        to = self.request.to_version
        self.progress(f"rehearsing Letta {self.deployment.version} -> {to} on a snapshot of the stack's database "
                      "(on this machine; the stack is only read)")
        report = rehearse(RehearsalRequest(targets=[to], cache=self.request.cache, dsn=dsn,
                                           encryption_key_env=encryption_key_env), progress=self.progress)
        lines = list(format_report(report))
        if not report.intact:
            raise RehearsalNotIntact("\n".join(lines) + f"\nThe rehearsal of {to} on a snapshot of this stack's "
                                      "database is NOT intact (above): nothing was changed.")
        return lines

    def _reached(self, commands: StackCommands) -> str:
        return "through a relay on 127.0.0.1 (it publishes no port)" if commands.relayed else "through its published port"

    def _log_path(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.workdir, 0o700)
        return self.workdir / "compose-upgrade.log"

    def _state(self, phase: str, **extra) -> None:
        data = {"phase": phase, "file": str(self.deployment.file), "from": self.deployment.version,
                "to": self.request.to_version, "pin_file": str(self.deployment.pin.file),
                "pin_line": self.deployment.pin.line, "pin_text": self.deployment.pin.text, **extra}
        write_text_atomic(self.state_path, json.dumps(data, indent=2), mode=0o600)

    def apply(self) -> str:
        """Carry it out; the message of a good end. A failure raises ComposeUpgradeError after
        the stack is back on the old release."""
        commands = StackCommands(self.deployment, self._log_path())
        try:
            return self._apply(commands)
        finally:
            commands.close()

    def _apply(self, commands: StackCommands) -> str:
        d, to, progress = self.deployment, self.request.to_version, self.progress
        if self.interrupted is not None:
            self._undo_interrupted(commands)
        url = commands.letta_url()
        if url is None or server_version(url, d.password) != d.version:
            raise ComposeUpgradeError(f"service `{d.service}` of {d.file} does not answer as Letta {d.version} "
                                      f"{'at ' + url if url else '(it publishes no port for 8283, or it is stopped)'}"
                                      ": start it as it runs today (`docker compose up -d`), then run this again.")
        dsn = commands.database_dsn()
        request = self._upgrade_request(dsn, url)
        if self.request.rehearse:
            for line in self._rehearsal(dsn, request.encryption_key_env):
                progress(line)
        progress(f"1/6 backup: every agent of {url} and the database into {self.backup}")
        ensure_backup(assess(request, with_backup=False), progress)
        self._state("backed-up")
        progress(f"2/6 stop: docker compose stop {d.service}")
        commands.stop_letta()
        self._state("stopped")
        step = "migrate"
        try:
            progress(f"3/6 migrate: Letta {d.version} -> {to}")
            outcome = apply_upgrade(request, progress=progress)
            step = "pin"
            new_line = rewrite_pin(d, to, self.workdir)
            self._state("pinned")
            progress(f"4/6 pin: {d.pin.file}:{d.pin.line} now reads `{new_line.strip()}` (before: "
                     f"{self.workdir / PIN_BEFORE})")
            step = "start"
            progress(f"5/6 start: docker compose up -d --no-deps {d.service}")
            commands.start_letta()
            request.url = commands.wait_healthy(to, d.password)
            step = "verify"
            progress(f"6/6 verify every agent of the backup on Letta {to} at {request.url}")
            report = finish_upgrade(request, progress=progress)
            if not report.ok:
                raise ComposeUpgradeError("verify found agents that differ from the backup:\n" + report.format_table())
        except (LettaCompatError, OSError) as exc:
            self._roll_back(commands, dsn, step, exc)
        self._state("done", revision=outcome.revision)
        return (f"Letta {to} runs service `{d.service}` of {d.file} on the migrated database "
                f"({outcome.revision}); every agent of the backup verified. Backup: {self.backup}")

    def _roll_back(self, commands: StackCommands, dsn: str, step: str, cause: BaseException) -> None:
        d, progress = self.deployment, self.progress
        progress(f"FAILED at {step}: {redact(str(cause)).splitlines()[0] if str(cause) else type(cause).__name__}")
        progress(f"rolling back: stop {d.service}, restore the database from the backup, pin {d.version}, start, verify")
        try:
            commands.stop_letta()
            rollback(dsn, self.backup, cache=self.request.cache, progress=progress)
            restore_pin(d)
            commands.start_letta()
            url = commands.wait_healthy(d.version, d.password)
            report = verify(url, self.backup, api_key=d.password)
        except (LettaCompatError, OSError) as again:
            self._state("rollback-failed", step=step)
            raise ComposeUpgradeError(
                f"The upgrade failed at {step} ({redact(str(cause)).splitlines()[0]}), and so did the rollback: "
                f"{redact(str(again)).splitlines()[0]}. The backup in {self.backup} is intact; put it "
                f"back with `letta-compat rollback --backup {self.backup}` and pin {d.version} in "
                f"{d.pin.file}. Logs: {commands.log}") from None
        self._state("rolled-back", step=step)
        agents = f"{len(report.rows)} agents verified" if report.ok else "verify found differences:\n" + report.format_table()
        raise ComposeUpgradeError(
            f"The upgrade to {self.request.to_version} failed at {step}: {redact(str(cause)).splitlines()[0]}\n"
            f"The stack is back on Letta {d.version} (database restored from the backup, pin put back): {agents}. "
            f"Logs: {commands.log} and {self.backup / ('upgrade-to-' + self.request.to_version + '.log')}")

    def _undo_interrupted(self, commands: StackCommands) -> None:
        """A killed run stopped the service (and may have migrated or re-pinned): put the
        database, the pin and the old service back, verified, before upgrading again."""
        d, progress = self.deployment, self.progress
        progress(f"a previous run of this upgrade stopped at `{self.interrupted['phase']}` without finishing (killed?): "
                 f"putting the stack back on Letta {d.version} first")
        commands.stop_letta()
        restore_pin(d)
        rollback(commands.database_dsn(), self.backup, cache=self.request.cache, progress=progress)
        commands.start_letta()
        url = commands.wait_healthy(d.version, d.password)
        report = verify(url, self.backup, api_key=d.password)
        if not report.ok:
            raise ComposeUpgradeError("after putting the stack back, verify found agents that differ from the "
                                      "backup:\n" + report.format_table())
        self._state("rolled-back", step=self.interrupted["phase"])
        progress(f"the stack is back on Letta {d.version}, {len(report.rows)} agents verified; upgrading again")
        self.interrupted = None
